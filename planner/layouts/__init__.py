"""Layout registries: FFN layouts and attention layouts, crossed by the search."""

FFN_LAYOUTS: dict = {name: None for name in ("ws1d", "ws2d", "wg-x", "wg-xy", "wg-xyz")}
ATTENTION_LAYOUTS: dict = {name: None for name in ("heads", "batch")}
