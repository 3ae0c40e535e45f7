"""Every registered layout has the name serving engineers use (serve's legend): a layout without
one made `planner serve deepseek-v3-h200` fail with a KeyError."""

from planner.commands.serve.serve import SERVING_NAMES
from planner.cost import layouts


def test_every_layout_has_a_serving_name():
    names = set(layouts.FFN_LAYOUTS) | set(layouts.ATTENTION_LAYOUTS) | set(layouts.EXPERT_LAYOUTS)
    assert names <= set(SERVING_NAMES)


def test_deepseek_plan_serves(planner):
    r = planner("serve", "deepseek-v3-h200")
    assert r.code == 0, r.err
