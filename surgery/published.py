"""fcn-weights: the published weights (the reference's trained FCNs and the ILSVRC classifiers it starts from).

A file lands in the cache (FCN_CACHE/weights, default ~/.cache/fcn/weights) only after its checksum and a check
against its model's net pass: the published checksum where there is one, else the sha256 that the first download
fitting the net pinned. Downloads resume where they stopped (HTTP Range) and show their progress; a mirror
(--mirror URL or FCN_WEIGHTS_MIRROR) serves the same file names when the original hosts are gone or slow.
"""
import argparse
import hashlib
import http.client
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from caffe_fcn import cli, registry
from caffe_fcn.files import write_atomic


def cache_dir():
    return Path(os.environ.get('FCN_CACHE') or Path.home() / '.cache' / 'fcn') / 'weights'


def cached(entry):
    """The cached file of a published entry, or None."""
    path = cache_dir() / entry.file
    return path if path.is_file() else None


def pins():
    path = cache_dir() / 'pins.json'
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text())
        if not isinstance(found, dict):
            raise ValueError('not a JSON object')
    except (ValueError, UnicodeDecodeError) as err:
        raise cli.BadInput(f'{path} is not a weights pin file ({err}): delete it, and the next fetch pins again') \
            from None
    return found


def digest(path, kind):
    h = hashlib.new(kind)
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def content_length(header, url):
    """The byte count a response announces (0: none announced); a header that is no count is the mirror's fault."""
    if not header:
        return 0
    if not header.strip().isdigit():
        raise cli.Failure(f'{url}: the server sent Content-Length {header!r}, not a byte count: a broken mirror?')
    return int(header)


def download(url, part):
    """GET `url` into `part`, going on from the bytes already there (HTTP Range)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={'Range': f'bytes={have}-'} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if have and response.status != 206:  # the server ignored the range: start over
                have = 0
            length = content_length(response.headers.get('Content-Length'), url)
            with open(part, 'ab' if have else 'wb') as f, tqdm(total=have + length or None, initial=have, unit='B',
                                                              unit_scale=True, desc=part.stem, leave=False) as bar:
                for block in iter(lambda: response.read(1 << 20), b''):
                    f.write(block)
                    bar.update(len(block))
        if length and part.stat().st_size != have + length:  # the connection closed early, without an error
            raise http.client.IncompleteRead(b'', length)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the part is whole
            return
        raise cli.Failure(f'{url}: HTTP {err.code} {err.reason}') from None
    except http.client.IncompleteRead:
        raise cli.Failure(f'{url}: the transfer broke off after {part.stat().st_size} bytes; fetch again to go on '
                          'from there') from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:  # a full disk stays an OSError: exit 1
        reason = getattr(err, 'reason', err)
        raise cli.Failure(f'{url}: {reason}: no network, or the host is gone; try --mirror URL') from None


def expected_digest(entry):
    """(kind, hex digest) the entry's file must have: its published checksum, else the sha256 pinned by its first
    download (None where it has none yet)."""
    return entry.checksum.split(':') if entry.checksum else ('sha256', pins().get(entry.file))


def trusted(entry):
    """The cached file of `entry` where its bytes are still those checked when it was fetched, else None: one
    that changed since (replaced, cut short) is moved aside (FILE.changed, kept for the user), and said so, so
    that the next fetch gets it again."""
    path = cached(entry)
    if path is None:
        return None
    kind, expected = expected_digest(entry)
    if expected is None or digest(path, kind) == expected:
        return path
    aside = path.with_name(f'{path.name}.changed')
    os.replace(path, aside)
    print(f'warning: the cached {path} is not the file that was fetched ({kind} differs: replaced or cut short '
          f'since); moved aside to {aside.name}', file=sys.stderr)
    return None


def verify(entry, path):
    """Check a file against the entry's checksum (or pin) and its model's net; pin it when nothing is published."""
    kind, expected = expected_digest(entry)
    if expected is not None:
        got = digest(path, kind)
        if got != expected:
            raise cli.Failure(f'{path.name} has {kind} {got}, not the {expected} '
                              f'{"published" if entry.checksum else "pinned by its first download"}: it is '
                              'corrupt or another file, and was not kept')
    fits(entry, path)
    if expected is None:
        write_atomic(cache_dir() / 'pins.json', json.dumps({**pins(), entry.file: digest(path, 'sha256')}, indent=1))


def fits(entry, path):
    """Load the file into the model's net: every layer, every shape, every value finite (surgery.load_weights)."""
    import netgen

    from .nets import instantiate
    from .weights import WeightsError, load_weights

    try:
        load_weights(instantiate(netgen.net(entry.model, 'deploy', width=entry.width)), str(path))
    except WeightsError as err:
        raise cli.Failure(f'{path.name} does not fit {entry.model}: {err}; it was not kept') from None


def fetch(entry, mirror=None):
    """The cached file of `entry`, downloaded and checked first when it is not there yet (or changed since)."""
    if trusted(entry):
        return cached(entry)
    cache_dir().mkdir(parents=True, exist_ok=True)
    url = f'{mirror.rstrip("/")}/{entry.file}' if mirror else entry.url
    part = cache_dir() / f'{entry.file}.part'
    download(url, part)
    return keep(entry, part)


def add(entry, source):
    """Put a file the user got elsewhere into the cache, after the same checks as a download."""
    source = Path(source)
    if not source.is_file():
        raise cli.BadInput(f'{source} does not exist')
    cache_dir().mkdir(parents=True, exist_ok=True)
    part = cache_dir() / f'{entry.file}.part'
    shutil.copyfile(source, part)
    return keep(entry, part)


def keep(entry, part):
    """Move a checked file into the cache, whole; one that fails the checks is removed (the next fetch starts
    over)."""
    try:
        verify(entry, part)
    except cli.Failure:
        part.unlink(missing_ok=True)
        raise
    final = cache_dir() / entry.file
    os.replace(part, final)
    return final


def checksum_note(entry):
    if entry.checksum:
        return f'{entry.checksum.split(":")[0]} (published)'
    return 'sha256 pinned by the first download' if entry.file in pins() else 'none published: pinned on download'


def published_weights(model, given=None):
    """`given`, or else the fetched published weights of `model` (saying which file is used), or a BadInput that
    says how to get them."""
    if given is not None:
        given = Path(given)
        if given.exists() and not given.is_file():  # reading a FIFO would wait forever
            raise cli.BadInput(f'weights {given} is not a regular file (a folder, FIFO or device): give a .caffemodel')
        return given
    entry = registry.published().get(model.name)
    path = trusted(entry) if entry else None
    if path is None:
        how = f'fetch the published ones with `fcn-weights fetch {model.name}`, or ' if entry else ''
        raise cli.BadInput(f'{model.name}: no weights given: {how}pass --weights W')
    print(f'{model.name}: using the published weights {path}', file=sys.stderr)
    return path


def entry_of(name):
    entries = registry.published()
    if name not in entries:
        raise argparse.ArgumentTypeError(f'no published weights for {name!r}; choose one of {", ".join(entries)}')
    return entries[name]


def parser():
    p = cli.ArgumentParser(prog='fcn-weights', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='command', required=True)
    sub.add_parser('list', help='every published file, its checksum and whether it is cached')
    f = sub.add_parser('fetch', help='download, check and cache published weights')
    f.add_argument('names', nargs='+', type=entry_of, metavar='NAME', help='model names, e.g. voc-fcn8s ilsvrc-vgg16')
    f.add_argument('--mirror', default=os.environ.get('FCN_WEIGHTS_MIRROR'), metavar='URL',
                   help='fetch the same file names from here (env FCN_WEIGHTS_MIRROR)')
    g = sub.add_parser('path', help="print a cached file's path")
    g.add_argument('name', type=entry_of, metavar='NAME')
    a = sub.add_parser('add', help='cache a file you got elsewhere, after the same checks')
    a.add_argument('name', type=entry_of, metavar='NAME')
    a.add_argument('file', type=Path, metavar='FILE')
    return p


@cli.tool('fcn-weights')
def main(argv=None):
    args = parser().parse_args(argv)
    if args.command == 'list':
        print(f'{"name":<24} {"file":<40} {"checksum":<36} cached')
        for name, entry in registry.published().items():
            print(f'{name:<24} {entry.file:<40} {checksum_note(entry):<36} {cached(entry) or "-"}')
    elif args.command == 'fetch':
        for entry in args.names:
            print(fetch(entry, args.mirror))
    elif args.command == 'path':
        path = trusted(args.name)
        if path is None:
            raise cli.Failure(f'{args.name.model} is not fetched yet: fcn-weights fetch {args.name.model}')
        print(path)
    else:
        print(add(args.name, args.file))
    return cli.OK


if __name__ == '__main__':
    sys.exit(main())
