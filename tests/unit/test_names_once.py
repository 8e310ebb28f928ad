"""Names that more than one module spells must agree with the one constant (no drift).

The fusion modes are :data:`model.detector.DETECTOR_FUSIONS`; the settings' ``Literal`` (kept a
``Literal`` so the settings need not import torch) must list exactly them, and the decoder's
fusion must support each. The grid positions are :data:`model.positions.POSITION_NAMES`.
"""

from __future__ import annotations

from typing import get_args

from linesight.settings import Settings
from model.answers import POSITIONS
from model.decoder import FUSION_MODES
from model.detector import DETECTOR_FUSIONS
from model.positions import POSITION_NAMES


def test_the_fusion_setting_lists_exactly_the_detector_fusions():
    assert set(get_args(Settings.model_fields["map_fusion"].annotation)) == set(DETECTOR_FUSIONS)
    assert set(DETECTOR_FUSIONS) <= set(FUSION_MODES)


def test_the_answer_parser_knows_exactly_the_grid_positions():
    assert set(POSITIONS) == set(POSITION_NAMES)
