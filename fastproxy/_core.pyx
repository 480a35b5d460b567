"""fastproxy._core: placeholder while the core is written."""
