"""The official WIDER FACE prediction format: exact round trip and clear errors."""
import os

import numpy as np
import pytest

from projects.retinaface.evaluation.functional import (
    format_wider_pred,
    load_wider_preds,
    parse_wider_pred,
    quantize_like_file,
    read_wider_pred,
    save_wider_preds,
    write_wider_pred,
    xyxy_to_xywh,
)


def _awkward_dets(n=50, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-5, 3000, (n, 2))
    wh = rng.uniform(0, 500, (n, 2))
    dets = np.concatenate([xy, wh, rng.random((n, 1))], 1)
    dets[0] = [0.0005, 1.0015, 2.4999999, 1e-9, 0.99999995]  # rounding edge cases
    dets[1] = [-0.0004, 12345.6785, 0, 7, 1.0]
    return dets


def test_round_trip_is_exact(tmp_path):
    dets = _awkward_dets()
    path = str(tmp_path / 'ev' / 'img_1.txt')
    write_wider_pred(path, 'img_1', dets)
    name, back = read_wider_pred(path)
    assert name == 'img_1'
    # what is read is exactly the written decimal text: '%.3f' coordinates, '%.6f' scores
    expected = np.array([[float('%.3f' % v) for v in row[:4]] + [float('%.6f' % row[4])]
                         for row in dets])
    np.testing.assert_array_equal(back, expected)
    np.testing.assert_array_equal(quantize_like_file(dets), expected)
    # and writing what was read reproduces the file byte for byte
    with open(path, 'rb') as f:
        first = f.read()
    write_wider_pred(path, name, back)
    with open(path, 'rb') as f:
        assert f.read() == first
    lines = first.decode().split('\n')
    assert lines[0] == 'img_1' and lines[1] == str(len(dets))
    assert lines[2] == '0.001 1.002 2.500 0.000 1.000000'  # 0.0005 -> 0.001 (binary > .0005)
    assert lines[3].split()[:2] == ['-0.000', '12345.678']


def test_empty_and_folder_round_trip(tmp_path):
    preds = {'1--Handshaking/a': _awkward_dets(3), '2--Demo/b': np.zeros((0, 5))}
    save_wider_preds(str(tmp_path), preds)
    with open(tmp_path / '2--Demo' / 'b.txt') as f:
        assert f.read() == 'b\n0\n'
    back = load_wider_preds(str(tmp_path))
    assert sorted(back) == sorted(preds)
    assert back['2--Demo/b'].shape == (0, 5)
    np.testing.assert_array_equal(back['1--Handshaking/a'],
                                  quantize_like_file(preds['1--Handshaking/a']))


def test_reader_accepts_common_variants():
    # trailing spaces, a blank line at the end, extra columns after the score
    name, dets = parse_wider_pred('x.jpg\n2\n1 2 3 4 0.5 \n5 6 7 8 0.25 9 9\n\n')
    assert name == 'x.jpg'
    np.testing.assert_array_equal(dets, [[1, 2, 3, 4, .5], [5, 6, 7, 8, .25]])
    assert format_wider_pred('n', np.zeros((0, 5))) == 'n\n0\n'


@pytest.mark.parametrize('text,msg', [
    ('', 'empty'),
    ('name\n', 'count'),
    ('name\ntwo\n', 'number of detections'),
    ('name\n2\n1 2 3 4 .5\n', 'declares 2'),
    ('name\n1\n1 2 3 4\n', 'x y w h score'),
    ('name\n1\n1 2 a 4 .5\n', 'x y w h score'),
])
def test_malformed_files_are_clear_errors(text, msg):
    with pytest.raises(ValueError, match=msg):
        parse_wider_pred(text, 'some/file.txt')


def test_xyxy_to_xywh_and_bad_keys(tmp_path):
    np.testing.assert_array_equal(xyxy_to_xywh(np.array([[1., 2, 11, 22, .5]])),
                                  [[1, 2, 10, 20, .5]])
    assert xyxy_to_xywh(np.zeros((0, 5))).shape == (0, 5)
    with pytest.raises(ValueError, match='event/name'):
        save_wider_preds(str(tmp_path), {'noevent': np.zeros((0, 5))})
    os.makedirs(tmp_path / 'empty_dir')
    with pytest.raises(ValueError, match='no prediction files'):
        load_wider_preds(str(tmp_path / 'empty_dir'))
