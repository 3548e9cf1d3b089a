"""The learning curve of a run, drawn from its log.jsonl as a PNG."""
import json
from pathlib import Path

import matplotlib

matplotlib.use('Agg')  # files only: no display on a training machine
import matplotlib.pyplot as plt  # noqa: E402

from solvers.metrics import METRICS  # noqa: E402


def read_log(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curve(log, png, title=''):
    """Loss per pixel (train and evaluation) and the four metrics of every scored output, by iteration."""
    rows = read_log(log)
    iters = [r['iter'] for r in rows]
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(iters, [r['train_loss_per_pixel'] for r in rows], 'o-', label='train')
    for score in rows[-1]['scores']:
        kept = [(r['iter'], r['scores'][score]) for r in rows if score in r['scores']]
        ax_loss.plot([i for i, _ in kept], [s['loss_per_pixel'] for _, s in kept], 's--', label=f'{score} eval')
        for metric in METRICS:
            ax_score.plot([i for i, _ in kept], [s[metric] for _, s in kept], 'o-', label=f'{score} {metric}')
    ax_loss.set(xlabel='iteration', ylabel='loss per pixel', title='loss')
    ax_score.set(xlabel='iteration', ylabel='score', ylim=(0, 1), title='evaluation')
    for ax in (ax_loss, ax_score):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = Path(png).with_name(f'.{Path(png).name}.tmp.png')
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(png)
    return Path(png)
