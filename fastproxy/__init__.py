"""fastproxy: an intercepting proxy with mitmproxy's programming model and a C proxy's speed."""

__version__ = "0.1.0"
