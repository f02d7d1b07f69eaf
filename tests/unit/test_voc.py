"""Scoring found cells against Pascal VOC boxes (training.voc), on hand-made boxes and files."""

from __future__ import annotations

import numpy as np

from training.voc import as_xyxy, box_iou, match_boxes, read_voc_boxes
from yawbcc_desktop.core.cells import CellRegion


def test_match_boxes_is_greedy_one_to_one():
    truth = [("WBC", 0, 0, 100, 100), ("WBC", 200, 200, 300, 300)]
    found = [(5, 5, 105, 105), (0, 0, 90, 100), (400, 400, 450, 450)]
    assert match_boxes(found, truth) == (1, 2, 1)
    assert match_boxes([], truth) == (0, 0, 2)
    assert match_boxes(found, []) == (0, 3, 0)
    region = CellRegion(200, 200, 100, 100, np.ones((100, 100), bool))
    assert match_boxes([region], truth) == (1, 0, 1)
    assert match_boxes([(0, 0, 60, 100)], truth, iou=0.5) == (1, 0, 1)  # IoU exactly 0.6
    assert match_boxes([(0, 0, 40, 100)], truth, iou=0.5) == (0, 1, 2)  # IoU 0.4
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_read_voc_boxes(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text(
        "<annotation><size><width>640</width><height>480</height></size>"
        "<object><name>WBC</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>110.6</xmax><ymax>220</ymax></bndbox></object>"
        "<object><name> Platelets </name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object>"
        "<object><name>RBC</name></object>"
        "</annotation>"
    )
    assert read_voc_boxes(xml) == [("WBC", 10, 20, 111, 220), ("Platelets", 1, 2, 3, 4)]


def test_as_xyxy_takes_a_region_a_box_or_a_named_box():
    region = CellRegion(10, 20, 30, 40, np.ones((40, 30), bool))
    assert as_xyxy(region) == (10.0, 20.0, 40.0, 60.0)
    assert as_xyxy((1, 2, 3, 4)) == (1.0, 2.0, 3.0, 4.0)
    assert as_xyxy(("WBC", 1, 2, 3, 4)) == (1.0, 2.0, 3.0, 4.0)
