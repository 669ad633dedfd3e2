"""Reading and writing WIDER FACE predictions in the official submission format.

One text file per image, ``<pred_dir>/<event>/<name>.txt``::

    <name>                 (image name; the official reader ignores this line)
    <n>                    (number of detections)
    x y w h score          (n lines, original image pixels, w = x2 - x1)

Values are written with fixed formats (``'%.3f'`` for coordinates, ``'%.6f'`` for scores by
default), so a file read back gives exactly ``float(fmt % value)``, and writing what was read
reproduces the file byte for byte.
"""
import os
import os.path as osp
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

COORD_FMT = '%.3f'
SCORE_FMT = '%.6f'


def xyxy_to_xywh(dets: np.ndarray) -> np.ndarray:
    """``(n, >=5)`` ``x1 y1 x2 y2 score`` -> ``(n, 5)`` float64 ``x y w h score``."""
    dets = np.asarray(dets, dtype=np.float64)
    if dets.size == 0:
        return np.zeros((0, 5), dtype=np.float64)
    if dets.ndim != 2 or dets.shape[1] < 5:
        raise ValueError(f'expected (n, 5) x1 y1 x2 y2 score, got shape {dets.shape}')
    out = dets[:, :5].copy()
    out[:, 2:4] = dets[:, 2:4] - dets[:, 0:2]
    return out


def format_wider_pred(name: str, dets: np.ndarray, coord_fmt: str = COORD_FMT,
                      score_fmt: str = SCORE_FMT) -> str:
    """Text of one prediction file; ``dets`` is ``(n, 5)`` ``x y w h score``."""
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    if '\n' in name:
        raise ValueError(f'image name {name!r} contains a newline')
    line = ' '.join([coord_fmt] * 4 + [score_fmt]) + '\n'
    body = (line * dets.shape[0]) % tuple(dets.ravel().tolist()) if dets.shape[0] else ''
    return f'{name}\n{dets.shape[0]}\n{body}'


def quantize_like_file(dets: np.ndarray, coord_fmt: str = COORD_FMT,
                       score_fmt: str = SCORE_FMT) -> np.ndarray:
    """The values a prediction file written with these formats gives back when read."""
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    if dets.shape[0] == 0:
        return dets.copy()
    text = format_wider_pred('x', dets, coord_fmt, score_fmt).split('\n', 2)[2]
    return np.array(text.split(), dtype=np.float64).reshape(-1, 5)


def parse_wider_pred(text: str, source: str = '<text>') -> Tuple[str, np.ndarray]:
    """Parse the text of one prediction file into ``(name, (n, 5) x y w h score)``.

    Blank lines are skipped; values after the fifth on a line are ignored (as the official
    reader does). A count that does not match the detection lines is an error.
    """
    lines = text.splitlines()
    if not lines:
        raise ValueError(f'{source}: empty prediction file (expected name and count lines)')
    name = lines[0].strip()
    rest = [ln for ln in lines[1:] if ln.strip()]
    if not rest:
        raise ValueError(f'{source}: missing the detection count line')
    try:
        count = int(rest[0].strip())
    except ValueError:
        raise ValueError(f'{source}: second line must be the number of detections, '
                         f'got {rest[0]!r}') from None
    rows = rest[1:]
    if count < 0 or len(rows) != count:
        raise ValueError(f'{source}: declares {count} detections but has {len(rows)} lines')
    if count == 0:
        return name, np.zeros((0, 5), dtype=np.float64)
    try:
        flat = np.array(' '.join(rows).split(), dtype=np.float64)
        if flat.size == 5 * count:
            return name, flat.reshape(count, 5)
        dets = np.zeros((count, 5), dtype=np.float64)
        for k, row in enumerate(rows):
            vals = row.split()
            if len(vals) < 5:
                raise ValueError
            dets[k] = np.array(vals[:5], dtype=np.float64)
    except ValueError:
        raise ValueError(f'{source}: detection lines must be "x y w h score"') from None
    return name, dets


def read_wider_pred(path: str) -> Tuple[str, np.ndarray]:
    """Read one prediction file: ``(name from the first line, (n, 5) x y w h score)``."""
    with open(path, encoding='utf-8') as f:
        return parse_wider_pred(f.read(), path)


def write_wider_pred(path: str, name: str, dets: np.ndarray, coord_fmt: str = COORD_FMT,
                     score_fmt: str = SCORE_FMT) -> None:
    """Write one prediction file (``dets``: ``(n, 5)`` ``x y w h score``)."""
    d = osp.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write(format_wider_pred(name, dets, coord_fmt, score_fmt))


def load_wider_preds(pred_dir: str) -> Dict[str, np.ndarray]:
    """Read a submission folder ``<pred_dir>/<event>/<name>.txt`` into
    ``{'event/name': (n, 5) x y w h score}``."""
    if not osp.isdir(pred_dir):
        raise FileNotFoundError(f'prediction folder {pred_dir} does not exist')
    preds = {}
    for event in sorted(os.listdir(pred_dir)):
        event_dir = osp.join(pred_dir, event)
        if not osp.isdir(event_dir):
            continue
        for fname in sorted(os.listdir(event_dir)):
            if not fname.endswith('.txt'):
                continue
            _, dets = read_wider_pred(osp.join(event_dir, fname))
            preds[f'{event}/{fname[:-4]}'] = dets
    if not preds:
        raise ValueError(f'no prediction files <event>/<name>.txt found under {pred_dir}')
    return preds


def save_wider_preds(pred_dir: str, preds: Mapping[str, np.ndarray],
                     names: Optional[Mapping[str, str]] = None, coord_fmt: str = COORD_FMT,
                     score_fmt: str = SCORE_FMT) -> None:
    """Write ``{'event/name': (n, 5) x y w h score}`` as a submission folder.

    The first line of each file is ``names[key]`` when given, else the file stem.
    """
    for key, dets in preds.items():
        event, sep, stem = key.rpartition('/')
        if not sep or not event or not stem:
            raise ValueError(f"image key must be 'event/name', got {key!r}")
        name = names.get(key, stem) if names else stem
        write_wider_pred(osp.join(pred_dir, event, stem + '.txt'), name, dets, coord_fmt,
                         score_fmt)
