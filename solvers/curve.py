"""The learning curve of a run, drawn from its log.jsonl as a PNG."""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use('Agg')  # files only: no display on a training machine
import matplotlib.pyplot as plt  # noqa: E402

from caffe_fcn.cli import BadInput  # noqa: E402
from caffe_fcn.files import write_atomic  # noqa: E402
from solvers.metrics import METRICS  # noqa: E402


def read_log(log):
    """The rows of a run's log.jsonl. A torn last line (the run was killed while writing it) is dropped, saying
    so, and the file rewritten without it; a broken line before the last is a BadInput naming it."""
    lines = [line for line in Path(log).read_text(errors='replace').splitlines() if line.strip()]
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            if not is_row(row):
                raise ValueError('not a log row')
        except ValueError as err:
            if n < len(lines):
                raise BadInput(f'{log} line {n} is not a log row ({err}): mend or delete that line') from None
            print(f'note: {log}: its last line is torn (a run killed while writing it): dropped', file=sys.stderr)
            write_atomic(log, ''.join(json.dumps(row) + '\n' for row in rows))
            break
        rows.append(row)
    return rows


def is_row(row):
    """A round's log row as training writes it: its stage, round, iteration, time and training loss, and per
    output its evaluation loss and metrics (what the curve, the CSV and best.caffemodel read)."""
    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    return isinstance(row, dict) and isinstance(row.get('stage'), str) and \
        all(isinstance(row.get(k), int) and not isinstance(row[k], bool) for k in ('round', 'iter')) and \
        all(number(row.get(k)) for k in ('seconds', 'train_loss', 'train_loss_per_pixel')) and \
        isinstance(row.get('scores'), dict) and bool(row['scores']) and \
        all(isinstance(s, dict) and all(number(s.get(m)) for m in (*METRICS, 'loss_per_pixel'))
            for s in row['scores'].values())


def steps_axis(rows):
    """Iterations laid end to end: each new stage (e.g. 32s -> 16s -> 8s) continues where the last ended."""
    xs, offset, last = [], 0, {}
    for row in rows:
        stage = row.get('stage', '')
        if last and stage != last['stage']:
            offset = xs[-1]
        xs.append(offset + row['iter'])
        last = {'stage': stage}
    return xs


def plot_curve(log, png, title=''):
    """Loss per pixel (train and evaluation) and the four metrics of every scored output, by iteration."""
    rows = read_log(log)
    xs = steps_axis(rows)
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(xs, [r['train_loss_per_pixel'] for r in rows], 'o-', label='train')
    for score in rows[-1]['scores']:
        kept = [(x, r['scores'][score]) for x, r in zip(xs, rows, strict=True) if score in r['scores']]
        ax_loss.plot([x for x, _ in kept], [s['loss_per_pixel'] for _, s in kept], 's--', label=f'{score} eval')
        for metric in METRICS:
            ax_score.plot([x for x, _ in kept], [s[metric] for _, s in kept], 'o-', label=f'{score} {metric}')
    for i in range(1, len(rows)):
        if rows[i].get('stage') != rows[i - 1].get('stage'):
            for ax in (ax_loss, ax_score):
                ax.axvline(xs[i - 1], color='gray', lw=0.8, ls=':')
            ax_score.text(xs[i - 1], 0.02, f' {rows[i].get("stage")}', fontsize=7, color='gray')
    ax_loss.set(xlabel='iteration', ylabel='loss per pixel', title='loss')
    ax_score.set(xlabel='iteration', ylabel='score', ylim=(0, 1), title='evaluation')
    for ax in (ax_loss, ax_score):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = Path(png).with_name(f'.{Path(png).stem}.tmp.png')
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(png)
    return Path(png)
