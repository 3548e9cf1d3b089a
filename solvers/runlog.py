"""A run's log: a row per round in log.jsonl and log.csv, the round's validation sheet (val.png), and
best.caffemodel, the snapshot with the best mean IU so far, checked before a run goes on (check_best). The curve
(log.png) is drawn by solvers.curve."""
import csv
import json
import math
import os
import sys
from pathlib import Path

from solvers import runs
from solvers.metrics import METRICS
from solvers.runs import ROW, ROW_ITER, SetupError


def write_sheet(path, samples, names):
    """The round's validation sheet: a few evaluation images, their ground truth and the prediction."""
    from solvers.infer import comparison, png_bytes

    runs.write_atomic(path, png_bytes(comparison(samples, names)))


def append_row(log, row):
    """The round's row at the end of log.jsonl and log.csv."""
    with open(log, 'a') as f:
        f.write(json.dumps(row) + '\n')
    append_csv(log.with_suffix('.csv'), row)


def append_csv(path, row):
    """The round's numbers as a CSV row (a header first in a new file), for spreadsheets."""
    flat = {key: row[key] for key in ('stage', 'round', 'iter', 'seconds', 'train_loss', 'train_loss_per_pixel')}
    flat.update((f'{score}_{metric}', result[metric]) for score, result in row['scores'].items() for metric in METRICS)
    new = not path.exists()
    with open(path, 'a', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(flat))
        if new:
            writer.writeheader()
        writer.writerow(flat)


def recover_rows(out, log, label, echo):
    """Log the rows of this stage's rounds whose snapshot is complete but whose log line is missing (a kill came
    between the two), letting best.caffemodel see them; returns the best mean IU so far."""
    from solvers.curve import is_row, read_log

    rows = read_log(log) if log.is_file() else []
    logged, best = {row['iter'] for row in rows}, best_so_far(rows, label)
    saved = sorted((int(m.group(1)), p) for p in Path(out).glob(f'*_iter_*{ROW}') if (m := ROW_ITER.search(p.name)))
    for _, path in saved:
        try:
            row = json.loads(path.read_text())
            if not is_row(row):
                raise ValueError('not a log row')
        except (OSError, ValueError):
            raise SetupError(f'{path} is not a log row (a damaged file?): delete it, and its round is not logged') \
                from None
        model = path.with_name(path.name[:-len(ROW)] + '.caffemodel')
        fresh = row['iter'] not in logged and row['stage'] == label.strip(' :')
        if fresh and model.with_suffix('.solverstate').is_file():
            best = keep_best(model, row_mean_iu(row), best)
            append_row(log, row)
            echo(f'note: round {row["round"]} (iteration {row["iter"]}) was saved but not logged (the run was killed '
                 'between the two): its row is logged now')
    return best


def row_mean_iu(row):
    """The mean IU a row is ranked by: its first output's (the scores are in the nets' output order)."""
    return next(iter(row['scores'].values()))['mean_iu']


def best_so_far(rows, label):
    """The best mean IU that this stage's log rows reached so far (a resumed run goes on from it)."""
    scores = [row_mean_iu(row) for row in rows if row['stage'] == label.strip(' :')]
    return max((s for s in scores if s == s), default=-math.inf)  # s == s: not NaN


def keep_best(model, mean_iu, best):
    """Copy the round's snapshot to best.caffemodel beside it when its mean IU beats the best so far."""
    if mean_iu == mean_iu and mean_iu > best:
        runs.write_atomic(model.parent / 'best.caffemodel', model.read_bytes())
        return mean_iu
    return best


def check_best(out, log, label, net, best):
    """Before a run goes on in `out`: best.caffemodel is kept where it is readable weights of `net`, else moved aside
    (best.caffemodel.unreadable) and rebuilt from the best logged round of this stage whose snapshot is readable;
    where none is, the next round scored writes it. `best`: the log's best mean IU so far -> the one that
    best.caffemodel now holds (-inf: none)."""
    from solvers.curve import read_log

    path = Path(out) / 'best.caffemodel'
    stage = label.strip(' :')
    rows = [row for row in (read_log(log) if log.is_file() else []) if row['stage'] == stage]
    if not rows or (path.is_file() and readable(path, net)):
        return best
    if path.is_file():
        aside = path.with_name(path.name + '.unreadable')
        os.replace(path, aside)
        problem = f'{path} is not readable weights of this net (moved aside to {aside.name})'
    else:
        problem = f'{path} is missing'
    ranked = sorted((row for row in rows if row_mean_iu(row) == row_mean_iu(row)), key=row_mean_iu, reverse=True)
    for row in ranked:
        source = next(Path(out).glob(f'*_iter_{row["iter"]}.caffemodel'), None)
        if source is not None and readable(source, net):
            runs.write_atomic(path, source.read_bytes())
            print(f'warning: {problem}: rebuilt from {source.name}, the best logged round ({row["round"]}) whose '
                  'snapshot is readable', file=sys.stderr)
            return row_mean_iu(row)
    print(f'warning: {problem}, and no logged round has a readable snapshot to rebuild it from: the next round '
          'scored writes it', file=sys.stderr)
    return -math.inf


def readable(path, net):
    """Whether the caffemodel at `path` is whole weights of `net`: it parses, and every layer of the net is there
    in its shapes with all its values (as surgery checks a file before Caffe loads it)."""
    from surgery.weights import read_caffemodel, validate

    try:
        return not validate(net, read_caffemodel(path), path).missing
    except ValueError:  # WeightsError: unparsable, cut short, or of another net
        return False
