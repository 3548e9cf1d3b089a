"""No tool writes over what it reads or over its own outputs (issue 34, part A): every option that names a path a
tool writes is declared an output (cli.add_output), and one check, run as the tool's parser finishes and again
with the files the tool derives (fcn-infer's label maps), refuses an output that lands on an input or on another
output, before anything is written. Then fcn-infer's other hostile inputs: output names of two images that would
meet, --skip-done over damaged outputs, --save-scores onto a full or size-limited disk, a --max-memory below a
byte, a symlink loop among the images; and a listing written onto a full device."""
import argparse
import configparser
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from common import BIN, ENV, REPO
from PIL import Image

from caffe_fcn import cli

WIDTH = '1/16'
WRITES = re.compile(r'\b(write|writes|written|output|outputs|save|saved|results)\b', re.I)
NOT_PATHS = {  # options whose help says the tool writes, whose value is not a path it writes
    ('fcn-netgen', 'models'): 'model names; their files go to --out or to the model folders',
    ('fcn-infer', '--scores-format'): 'what --save-scores writes: probabilities or top1',
}


class Captured(BaseException):
    """Raised as a tool's parser starts parsing, carrying that parser (not an Exception: cli.tool lets it pass)."""


def entry_points():
    """Every tool's main as MODULE:FUNCTION: the console scripts of setup.cfg and python -m caffe_fcn.bench."""
    config = configparser.ConfigParser()
    config.read(REPO / 'setup.cfg')
    lines = config['options.entry_points']['console_scripts'].strip().splitlines()
    return [line.partition('=')[2].strip() for line in lines] + ['caffe_fcn.bench.__main__:main']


def parser_of(entry, monkeypatch):
    """The parser a tool's main builds, caught as it starts parsing (whether the tool has a parser() or not)."""
    def capture(self, args=None, namespace=None):
        raise Captured(self)

    monkeypatch.setattr(cli.ArgumentParser, 'parse_known_args', capture)
    module, _, function = entry.partition(':')
    with pytest.raises(Captured) as caught:
        getattr(importlib.import_module(module), function)(['--help'])
    monkeypatch.undo()
    return caught.value.args[0]


def with_subcommands(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases name one parser twice
                yield from with_subcommands(sub)


def writes_a_path(action):
    """Whether an option (or positional) takes a value that, by its name or help, is a place the tool writes."""
    return action.nargs != 0 and not isinstance(action, argparse._SubParsersAction) and (
        action.dest in ('out', 'report', 'json', 'plot', 'scratch') or bool(WRITES.search(action.help or '')))


def test_every_option_naming_a_written_path_is_declared_an_output(monkeypatch):
    """A new writing option cannot be forgotten: its value must be a cli.output, which the check keeps apart."""
    undeclared, seen = [], set()
    for entry in entry_points():
        for parser in with_subcommands(parser_of(entry, monkeypatch)):
            assert isinstance(parser, cli.ArgumentParser), parser.prog  # whose parse runs the check
            tool = parser.prog.split()[0] if parser.prog.startswith('fcn-') else parser.prog
            for action in filter(writes_a_path, parser._actions):
                name = action.option_strings[0] if action.option_strings else action.dest
                seen.add((tool, name))
                if action.type not in (cli.output, cli.output_folder) and (tool, name) not in NOT_PATHS:
                    undeclared.append(f'{parser.prog} {name}')
    assert not undeclared, f'write paths not declared with cli.add_output: {undeclared}'
    assert {('fcn-infer', '--report'), ('fcn-infer', '--out'), ('fcn-data', '--out'),
            ('python -m caffe_fcn.bench', '--plot')} <= seen  # the scan finds them
    assert set(NOT_PATHS) <= seen  # no stale exception


def toy_parser():
    ap = cli.ArgumentParser(prog='toy')
    ap.add_argument('--weights', type=Path)
    cli.add_output(ap, '--report')
    cli.add_output(ap, '--log', default=Path('log.json'))
    return ap


def test_the_parser_refuses_an_output_on_an_input_or_on_another_output(tmp_path):
    weights = tmp_path / 'w.caffemodel'
    weights.write_bytes(b'weights')
    os.link(weights, tmp_path / 'link.json')
    ap = toy_parser()
    with pytest.raises(cli.BadInput, match='w.caffemodel is also an input'):
        ap.parse_args(['--weights', str(weights), '--report', str(weights)])
    with pytest.raises(cli.BadInput, match='link.json is also an input'):  # a hard link is the same file
        ap.parse_args(['--weights', str(weights), '--report', str(tmp_path / 'link.json')])
    with pytest.raises(cli.BadInput, match='is also another output'):
        ap.parse_args(['--report', str(tmp_path / 'r.json'), '--log', str(tmp_path / '.' / 'r.json')])
    with pytest.raises(cli.BadInput, match='log.json is also another output'):  # a default counts too
        ap.parse_args(['--report', 'log.json'])
    args = ap.parse_args(['--weights', str(weights), '--report', str(tmp_path / 'r.json')])
    assert isinstance(args.report, cli.Output) and isinstance(args.log, cli.Output)
    with pytest.raises(cli.BadInput, match='r.json is also another output'):  # the files a tool derives
        cli.check_outputs(args, writes={'log': [tmp_path / 'a.png', tmp_path / 'r.json']})
    with pytest.raises(SystemExit):
        ap.parse_args(['--report', ''])  # an empty path would be the current folder


def test_a_symlink_loop_is_no_crash_of_the_check(tmp_path):
    loop = tmp_path / 'loop.png'
    loop.symlink_to(loop)
    ap = toy_parser()
    ap.parse_args(['--weights', str(loop), '--report', str(tmp_path / 'r.json')])
    with pytest.raises(cli.BadInput, match='loop.png is also an input'):
        ap.parse_args(['--weights', str(loop), '--report', str(loop)])


def run(*args, timeout=300, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=ENV, cwd='/', timeout=timeout,
                          **kw)


def refused(result, *words):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert all(word in result.stderr for word in words), result.stderr[-2000:]
    assert 'Traceback' not in result.stderr and 'internal' not in result.stderr


def one_error_line(result, status, *words):
    assert result.returncode == status, (result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if 'error' in line]
    assert len(errors) == 1 and all(word in errors[0] for word in words), result.stderr[-2000:]
    assert 'Traceback' not in result.stderr and 'internal' not in result.stderr


def test_two_outputs_on_one_file_are_refused_by_every_tool_before_caffe(tmp_path):
    """Parse-time probes, one per tool that writes two things or reads a path: no Caffe needed."""
    weights = tmp_path / 'w.caffemodel'
    weights.write_bytes(b'not really weights')
    for args, words in [
            ([BIN / 'fcn-infer', 'voc-fcn8s', '--weights', weights, 'img.png', '--out', tmp_path, '--report', weights],
             'w.caffemodel is also an input'),
            ([BIN / 'fcn-infer', 'voc-fcn8s', 'img.png', '--out', tmp_path / 'o', '--report', tmp_path / 'o'],
             'is also another output'),
            ([BIN / 'fcn-train', 'voc-fcn32s', '--data-root', tmp_path, '--out', tmp_path], 'is also an input'),
            ([BIN / 'fcn-score', 'voc-fcn8s', '--weights', weights, '--json', weights], 'is also an input'),
            ([sys.executable, '-m', 'caffe_fcn.bench', '--no-torch', '--out', tmp_path / 'r.json', '--plot',
              tmp_path / 'r.json'], 'is also another output'),
            ([BIN / 'fcn-surgery', 'transplant', '--src-net', 'a', '--src-weights', weights, '--dst-net', 'b',
              '--out', weights], 'is also an input')]:
        refused(run(*args), words)
    assert weights.read_bytes() == b'not really weights'


@pytest.mark.parametrize('value', ['0.5', '', 'K', '1e400'])
def test_max_memory_below_a_byte_or_empty_is_a_usage_error(value):
    """0.5 became 0 bytes, which means no limit; '' was an IndexError."""
    refused(run(BIN / 'fcn-infer', 'voc-fcn8s', 'img.png', '--out', '/tmp/none', '--max-memory', value),
            'argument --max-memory')


@pytest.mark.parametrize('command', [['fcn-netgen', '--list'], ['fcn-weights', 'list'],
                                     ['fcn-netgen', '--info', 'voc-fcn32s']])
def test_a_listing_onto_a_full_device_is_one_error_line(command):
    """Python's own flush at exit failed there: status 120, no tool line (PYTHONUNBUFFERED hid it)."""
    buffered = {k: v for k, v in ENV.items() if k != 'PYTHONUNBUFFERED'}
    with open('/dev/full', 'w') as full:
        result = subprocess.run([str(BIN / command[0]), *command[1:]], stdout=full, stderr=subprocess.PIPE,
                                text=True, env=buffered, timeout=120)
    one_error_line(result, 1, f'{command[0]}: error:', 'No space left on device')


# --- fcn-infer, end to end --------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp('weights') / 'w.caffemodel'
    made = run(BIN / 'fcn-surgery', 'init', 'voc-fcn8s', '--random', '--width', WIDTH, '--out', path)
    assert made.returncode == 0, made.stderr[-2000:]
    return path


def test_a_folder_where_a_file_goes_and_a_file_where_a_folder_goes_are_usage_errors(weights, tmp_path):
    """Found when the work was done: `--report DIR` after every label map was written, as `[Errno 21] Is a
    directory`, exit 1; now each tool's parse refuses it (exit 2) and nothing is written."""
    folder, file = tmp_path / 'here', tmp_path / 'file.txt'
    folder.mkdir()
    file.write_text('kept')
    photo = image(tmp_path / 'photo.png')
    refused(infer(weights, photo, '--out', tmp_path / 'o', '--report', folder), f'{folder} is a folder')
    assert not (tmp_path / 'o').exists()
    for args, words in [
            ([BIN / 'fcn-infer', 'voc-fcn8s', '--weights', weights, photo, '--out', file], 'is a file, not a folder'),
            ([BIN / 'fcn-train', 'voc-fcn32s', '--out', file], 'is a file, not a folder'),
            ([BIN / 'fcn-data', 'import', 'index', tmp_path, '--out', file], 'is a file, not a folder'),
            ([BIN / 'fcn-export', 'voc-fcn8s', '--weights', weights, '--out', folder], 'is a folder'),
            ([BIN / 'fcn-score', 'voc-fcn8s', '--weights', weights, '--json', folder], 'is a folder'),
            ([BIN / 'fcn-surgery', 'init', 'voc-fcn8s', '--random', '--out', folder], 'is a folder')]:
        refused(run(*args), words)
    assert file.read_text() == 'kept' and not any(folder.iterdir())


def test_label_maps_never_go_among_a_folder_of_images(weights, tmp_path):
    """`fcn-infer photos --out photos` wrote photo.png beside photo.jpg: the folder (a dataset's images/) then held
    two images for one id, and the next run over it took the label maps for images."""
    photos = tmp_path / 'photos'
    image(photos / 'a.jpg')
    image(photos / 'b.jpg')
    for given in ([photos], [photos / '.', photos / 'a.jpg']):
        refused(infer(weights, *given, '--out', photos), 'the folder of images to segment', 'nothing was written')
    assert sorted(p.name for p in photos.iterdir()) == ['a.jpg', 'b.jpg']
    for given, out in (([photos], photos / 'seg'), ([photos / 'b.jpg'], photos)):  # below them; one image named
        result = infer(weights, *given, '--out', out)
        assert result.returncode == 0, result.stderr[-2000:]
    assert (photos / 'b.png').is_file()


def image(path, shade=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((48, 48, 3), shade, np.uint8)).save(path)
    return path


def infer(weights, *args, **kw):
    return run(BIN / 'fcn-infer', 'voc-fcn8s', '--weights', weights, '--width', WIDTH, *args, **kw)


def test_report_may_land_on_no_input_and_on_no_label_map(weights, tmp_path):
    shared, weights = weights, tmp_path / 'w.caffemodel'
    weights.write_bytes(shared.read_bytes())  # a copy: the run could destroy it
    photo = image(tmp_path / 'photo.png')
    kept = {p: p.read_bytes() for p in (weights, photo)}
    refused(infer(weights, photo, '--out', tmp_path / 'o', '--report', weights), 'w.caffemodel is also an input')
    refused(infer(weights, photo, '--out', tmp_path / 'o', '--report', photo), 'photo.png is also an input')
    assert all(p.read_bytes() == data for p, data in kept.items())
    assert infer(weights, photo, '--out', tmp_path / 'o').returncode == 0
    label_map = (tmp_path / 'o' / 'photo.png').read_bytes()
    refused(infer(weights, photo, '--out', tmp_path / 'o', '--report', tmp_path / 'o' / 'photo.png'),
            'photo.png is also another output')
    assert (tmp_path / 'o' / 'photo.png').read_bytes() == label_map


def test_no_image_writes_over_another_images_output(weights, tmp_path):
    """a_overlay.png's label map was a_overlay.png, a.png's overlay: the longer name is renamed."""
    a, a_overlay = image(tmp_path / 'in' / 'a.png'), image(tmp_path / 'in' / 'a_overlay.png', 200)
    result = infer(weights, a, a_overlay, '--out', tmp_path / 'o')
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / 'o'
    assert sorted(p.name for p in out.iterdir()) == ['a.png', 'a_overlay.png', 'a_overlay_png.png',
                                                     'a_overlay_png_overlay.png']
    assert Image.open(out / 'a.png').mode == 'P' and Image.open(out / 'a_overlay.png').mode == 'RGB'
    assert len(set(result.stdout.split())) == 4  # each written path printed once


def test_skip_done_redoes_a_truncated_label_map_and_an_empty_overlay(weights, tmp_path):
    images = [image(tmp_path / 'in' / f'{name}.png') for name in 'abc']
    out = tmp_path / 'o'
    assert infer(weights, tmp_path / 'in', '--out', out).returncode == 0
    label_map = (out / 'a.png').read_bytes()
    (out / 'a.png').write_bytes(label_map[:len(label_map) // 2])
    (out / 'b_overlay.png').write_bytes(b'')
    result = infer(weights, tmp_path / 'in', '--out', out, '--skip-done')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'segmented 2 image(s)' in result.stderr and '1 done already' in result.stderr, result.stderr[-2000:]
    for path in out.iterdir():
        Image.open(path).load()  # every output whole again
    assert len(images) * 2 == len(list(out.iterdir()))


def limited(kilobytes):
    """A child's file-size limit (RLIMIT_FSIZE; Python ignores SIGXFSZ, so a write past it fails with EFBIG)."""
    import resource

    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (kilobytes << 10, kilobytes << 10))
    return apply


def test_save_scores_past_a_file_size_limit_is_one_line_and_leaves_no_part(weights, tmp_path):
    """The probabilities (96 KB here) past a 32 KB limit: one line, exit 1, no .part left behind."""
    photo = image(tmp_path / 'photo.png')
    result = infer(weights, photo, '--out', tmp_path / 'o', '--save-scores', preexec_fn=limited(32))
    one_error_line(result, 1, 'File too large', 'photo.npy')
    assert not [p.name for p in (tmp_path / 'o').iterdir() if p.suffix in ('.part', '.npy')]


def test_the_probabilities_file_is_allocated_before_it_is_mapped(tmp_path):
    """A sparse file mapped into memory dies with SIGBUS when a full disk cannot take a page of it: every byte
    of the .part is allocated (posix_fallocate) first, where a full disk is an OSError."""
    from solvers.infer import Probabilities

    scores = Probabilities('probabilities', {'score': tmp_path / 'a.npy'}, {'score': 21}, 300, 400)
    part = next(tmp_path.glob('.a.npy.part'))
    assert part.stat().st_blocks * 512 >= 21 * 300 * 400 * 2
    scores.discard()
    assert not list(tmp_path.iterdir())


def test_save_scores_is_a_flag_and_leaves_the_images_to_the_images(weights, tmp_path):
    """`--save-scores IMAGE` took the image as the option's value."""
    photo = image(tmp_path / 'photo.png')
    result = infer(weights, '--save-scores', photo, '--out', tmp_path / 'o')
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.load(tmp_path / 'o' / 'photo.npy').shape == (21, 48, 48)
    result = infer(weights, '--save-scores', '--scores-format', 'top1', photo, '--out', tmp_path / 't')
    assert result.returncode == 0 and (tmp_path / 't' / 'photo_confidence.png').is_file(), result.stderr[-2000:]


def test_a_symlink_loop_among_the_images_fails_that_image_only(weights, tmp_path):
    folder = tmp_path / 'in'
    image(folder / 'good.png')
    (folder / 'loop.png').symlink_to(folder / 'loop.png')
    result = infer(weights, folder, '--out', tmp_path / 'o', '--keep-going')
    one_error_line(result, 1, 'loop.png')
    assert sorted(p.name for p in (tmp_path / 'o').iterdir()) == ['good.png', 'good_overlay.png']
