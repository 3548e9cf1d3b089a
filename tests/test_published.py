"""fcn-weights against a small HTTP server on 127.0.0.1 that the test starts: a whole download, one broken off and
resumed with an HTTP Range request, a corrupt file, a file for another net, no server at all, a pinned checksum and
a file added by hand. Reduced-width stand-ins for the published files keep them small."""
import hashlib
import http.server
import sys
import threading

import pytest
from common import ENV, child


def publish(url, **fields):
    """Declare published weights for voc-fcn32s-fixed at width 1/16: the file at `url`."""
    from caffe_fcn import registry

    registry.publish(registry.Published('voc-fcn32s-fixed', url, width=1 / 16, **fields))


def weights_main(url, checksum, *args):
    """fcn-weights' main on ARGS, its status the exit status, once voc-fcn32s-fixed's weights are published at `url`
    with `checksum` (none where it is '')."""
    publish(url, checksum=checksum or None)
    from surgery.published import main
    sys.exit(main(list(args)))


class Server(http.server.ThreadingHTTPServer):
    """Serves `files` {name: bytes}; `broken` names are cut off halfway once; `log` keeps each request's Range."""
    def __init__(self):
        super().__init__(('127.0.0.1', 0), Handler)
        self.files, self.broken, self.log, self.length = {}, set(), [], None  # length: a header to send instead

    @property
    def url(self):
        return f'http://127.0.0.1:{self.server_address[1]}'


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        name, data = self.path.lstrip('/'), None
        data = self.server.files.get(name)
        self.server.log.append((name, self.headers.get('Range')))
        if data is None:
            self.send_error(404)
            return
        start = int(self.headers['Range'].split('=')[1].rstrip('-')) if self.headers.get('Range') else 0
        self.send_response(206 if start else 200)
        self.send_header('Content-Length', self.server.length or str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if name in self.server.broken:
            self.server.broken.discard(name)
            body = body[:len(body) // 2]  # the connection drops with the rest unsent
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    s = Server()
    thread = threading.Thread(target=s.serve_forever, daemon=True)
    thread.start()
    yield s
    s.shutdown()
    s.server_close()


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """Stand-in weights for voc-fcn32s-fixed at width 1/16, and a file made for width 1/8 (another net)."""
    import netgen
    import surgery

    root = tmp_path_factory.mktemp('published')
    made = {}
    for width, name in ((1 / 16, 'good'), (1 / 8, 'other')):
        net = surgery.instantiate(netgen.net('voc-fcn32s-fixed', 'deploy', width=width))
        surgery.stand_in_trunk(net, seed=0)
        surgery.interp(net)
        net.save(str(root / f'{name}.caffemodel'))
        made[name] = (root / f'{name}.caffemodel').read_bytes()
    return made


def weights_tool(url, checksum, cache, *args):
    return child(weights_main, url, checksum or '', *args, env={**ENV, 'FCN_CACHE': str(cache)}, timeout=300)


def sha1(data):
    return 'sha1:' + hashlib.sha1(data).hexdigest()


def test_fetch_path_and_list(server, weights, tmp_path):
    server.files['w.caffemodel'] = weights['good']
    url = f'{server.url}/w.caffemodel'
    result = weights_tool(url, sha1(weights['good']), tmp_path, 'fetch', 'voc-fcn32s-fixed')
    assert result.returncode == 0, result.stderr[-2000:]
    cached = tmp_path / 'weights' / 'w.caffemodel'
    assert cached.read_bytes() == weights['good'] and result.stdout.strip() == str(cached)
    assert weights_tool(url, sha1(weights['good']), tmp_path, 'path', 'voc-fcn32s-fixed').stdout.strip() == str(cached)
    listing = weights_tool(url, sha1(weights['good']), tmp_path, 'list').stdout
    assert 'voc-fcn32s-fixed' in listing and 'sha1 (published)' in listing and str(cached) in listing
    assert 'fcn8s-heavy-pascal.caffemodel' in listing and 'md5 (published)' in listing


def test_a_broken_transfer_resumes_with_a_range_request(server, weights, tmp_path):
    server.files['w.caffemodel'] = weights['good']
    server.broken.add('w.caffemodel')
    url = f'{server.url}/w.caffemodel'
    first = weights_tool(url, sha1(weights['good']), tmp_path, 'fetch', 'voc-fcn32s-fixed')
    assert first.returncode == 1 and 'broke off' in first.stderr and 'Traceback' not in first.stderr, first.stderr
    assert not (tmp_path / 'weights' / 'w.caffemodel').exists()  # never a partial file in place
    second = weights_tool(url, sha1(weights['good']), tmp_path, 'fetch', 'voc-fcn32s-fixed')
    assert second.returncode == 0, second.stderr[-2000:]
    assert (tmp_path / 'weights' / 'w.caffemodel').read_bytes() == weights['good']
    assert server.log[-1][1] == f'bytes={len(weights["good"]) // 2}-'  # went on where it stopped


def test_a_corrupt_file_or_one_for_another_net_is_not_kept(server, weights, tmp_path):
    server.files['w.caffemodel'] = weights['good'][:-10] + b'0123456789'
    url = f'{server.url}/w.caffemodel'
    result = weights_tool(url, sha1(weights['good']), tmp_path, 'fetch', 'voc-fcn32s-fixed')
    assert result.returncode == 1 and 'sha1' in result.stderr and 'was not kept' in result.stderr
    assert not list((tmp_path / 'weights').glob('w.caffemodel*'))
    server.files['w.caffemodel'] = weights['other']
    result = weights_tool(url, None, tmp_path, 'fetch', 'voc-fcn32s-fixed')
    assert result.returncode == 1 and 'does not fit voc-fcn32s-fixed' in result.stderr
    assert not list((tmp_path / 'weights').glob('w.caffemodel*'))


def test_no_server_and_a_missing_file_are_one_line(server, weights, tmp_path):
    for url, message in (('http://127.0.0.1:9/w.caffemodel', 'no network, or the host is gone'),
                         (f'{server.url}/nothing.caffemodel', 'HTTP 404')):
        result = weights_tool(url, None, tmp_path, 'fetch', 'voc-fcn32s-fixed')
        assert result.returncode == 1 and message in result.stderr and 'Traceback' not in result.stderr


def test_the_first_download_pins_a_checksum_and_a_mirror_serves_the_same_name(server, weights, tmp_path):
    server.files['w.caffemodel'] = weights['good']
    result = weights_tool('http://gone.invalid/w.caffemodel', None, tmp_path, 'fetch', 'voc-fcn32s-fixed',
                          '--mirror', server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'pinned by the first download' in weights_tool('x/w.caffemodel', None, tmp_path, 'list').stdout
    (tmp_path / 'weights' / 'w.caffemodel').unlink()
    server.files['w.caffemodel'] = weights['good'][:-1] + b'\x00'  # same net, other bytes: the pin catches it
    result = weights_tool(f'{server.url}/w.caffemodel', None, tmp_path, 'fetch', 'voc-fcn32s-fixed')
    assert result.returncode == 1 and 'pinned by its first download' in result.stderr


def test_add_a_file_got_elsewhere(weights, tmp_path):
    good, other = tmp_path / 'good.caffemodel', tmp_path / 'other.caffemodel'
    good.write_bytes(weights['good'])
    other.write_bytes(weights['other'])
    url = 'http://gone.invalid/w.caffemodel'
    assert weights_tool(url, sha1(weights['good']), tmp_path, 'add', 'voc-fcn32s-fixed', other).returncode == 1
    result = weights_tool(url, sha1(weights['good']), tmp_path, 'add', 'voc-fcn32s-fixed', good)
    assert result.returncode == 0 and (tmp_path / 'weights' / 'w.caffemodel').read_bytes() == weights['good']
    assert weights_tool(url, None, tmp_path, 'path', 'nosuchmodel').returncode == 2


def score_main(url, *args):
    """fcn-score's main on ARGS, its status the exit status, once voc-fcn32s-fixed's weights are published at `url`,
    their reported number '12.3 test number'."""
    publish(url, reported='12.3 test number')
    from solvers.score import main
    sys.exit(main(list(args)))


def test_score_published_fetches_scores_and_prints_the_reported_number(server, weights, tmp_path):
    from caffe_fcn.datalayers.synth import synthesize

    synthesize('sbdd', tmp_path / 'data' / 'sbdd', count=4, seed=0, size=(48, 48))
    synthesize('voc', tmp_path / 'data' / 'pascal', count=4, seed=0, size=(48, 48))
    server.files['w.caffemodel'] = weights['good']
    result = child(score_main, 'http://gone.invalid/w.caffemodel', 'voc-fcn32s-fixed', '--published', '--mirror',
                   server.url, '--data-root', tmp_path / 'data', env={**ENV, 'FCN_CACHE': str(tmp_path / 'cache')},
                   timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'voc-fcn32s-fixed, published weights: mean IU ' in result.stdout
    assert 'reported: 12.3 test number' in result.stdout
    assert (tmp_path / 'cache' / 'weights' / 'w.caffemodel').is_file()  # fetched on the way


def test_a_content_length_that_is_no_count_is_one_line(server, weights, tmp_path):
    server.files['w.caffemodel'], server.length = weights['good'], 'abc'
    result = weights_tool(f'{server.url}/w.caffemodel', None, tmp_path, 'fetch', 'voc-fcn32s-fixed')
    assert result.returncode == 1 and "the server sent Content-Length 'abc', not a byte count" in result.stderr
    assert 'Traceback' not in result.stderr and 'internal error' not in result.stderr


def test_a_cached_file_changed_since_its_fetch_is_not_used_and_is_fetched_again(server, weights, tmp_path):
    """The cache was trusted by name: another net's file (or a cut one) put in its place was used as the published
    weights; now each use checks its bytes against the published checksum or the pin, moves a changed file aside
    and says so, and the next fetch gets it again."""
    server.files['w.caffemodel'] = weights['good']
    url = f'{server.url}/w.caffemodel'
    cached = tmp_path / 'weights' / 'w.caffemodel'
    for checksum in (sha1(weights['good']), ''):  # published, then pinned by the first download
        assert weights_tool(url, checksum, tmp_path, 'fetch', 'voc-fcn32s-fixed').returncode == 0
        for changed in (weights['other'], weights['good'][:1000]):
            cached.write_bytes(changed)
            result = weights_tool(url, checksum, tmp_path, 'path', 'voc-fcn32s-fixed')
            assert result.returncode == 1 and 'not the file that was fetched' in result.stderr, result.stderr
            assert not cached.exists() and cached.with_name('w.caffemodel.changed').read_bytes() == changed
            result = weights_tool(url, checksum, tmp_path, 'fetch', 'voc-fcn32s-fixed')
            assert result.returncode == 0 and cached.read_bytes() == weights['good'], result.stderr[-2000:]
        (tmp_path / 'weights' / 'pins.json').unlink(missing_ok=True)
        cached.unlink()

