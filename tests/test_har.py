import base64
import json

import haralyzer
import jsonschema

from fastproxy.io.har import to_har, write_har
from tests.test_flowfile import make_flow

_NAME_VALUE = {
    "type": "array",
    "items": {"type": "object", "required": ["name", "value"],
              "properties": {"name": {"type": "string"}, "value": {"type": "string"}}},
}
_TIME = {"type": "number", "minimum": -1}

# HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/): the required fields and types.
HAR_SCHEMA = {
    "type": "object",
    "required": ["log"],
    "properties": {"log": {
        "type": "object",
        "required": ["version", "creator", "entries"],
        "properties": {
            "version": {"const": "1.2"},
            "creator": {"type": "object", "required": ["name", "version"]},
            "pages": {"type": "array"},
            "entries": {"type": "array", "items": {
                "type": "object",
                "required": ["startedDateTime", "time", "request", "response", "cache", "timings"],
                "properties": {
                    "startedDateTime": {"type": "string", "format": "date-time",
                                        "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"},
                    "time": {"type": "number", "minimum": 0},
                    "request": {
                        "type": "object",
                        "required": ["method", "url", "httpVersion", "cookies", "headers",
                                     "queryString", "headersSize", "bodySize"],
                        "properties": {
                            "method": {"type": "string"}, "url": {"type": "string"},
                            "httpVersion": {"type": "string"},
                            "cookies": _NAME_VALUE, "headers": _NAME_VALUE,
                            "queryString": _NAME_VALUE,
                            "postData": {"type": "object", "required": ["mimeType"],
                                         "properties": {"params": _NAME_VALUE,
                                                        "text": {"type": "string"}}},
                            "headersSize": {"type": "integer"}, "bodySize": {"type": "integer"},
                        },
                    },
                    "response": {
                        "type": "object",
                        "required": ["status", "statusText", "httpVersion", "cookies", "headers",
                                     "content", "redirectURL", "headersSize", "bodySize"],
                        "properties": {
                            "status": {"type": "integer"}, "statusText": {"type": "string"},
                            "cookies": _NAME_VALUE, "headers": _NAME_VALUE,
                            "content": {"type": "object", "required": ["size", "mimeType"],
                                        "properties": {"size": {"type": "integer"},
                                                       "text": {"type": "string"},
                                                       "encoding": {"const": "base64"}}},
                            "redirectURL": {"type": "string"},
                            "headersSize": {"type": "integer"}, "bodySize": {"type": "integer"},
                        },
                    },
                    "cache": {"type": "object"},
                    "timings": {
                        "type": "object", "required": ["send", "wait", "receive"],
                        "properties": {"send": {"type": "number", "minimum": 0},
                                       "wait": {"type": "number", "minimum": 0},
                                       "receive": {"type": "number", "minimum": 0},
                                       "blocked": _TIME, "dns": _TIME, "connect": _TIME,
                                       "ssl": _TIME},
                    },
                    "serverIPAddress": {"type": "string"},
                },
            }},
        },
    }},
}


def flows():
    binary = make_flow(body=bytes(range(256)))
    binary.response.headers["content-type"] = "image/png"
    return [make_flow(), make_flow(response=False, error="connect failed"), binary]


def test_har_is_valid_har_1_2():
    har = json.loads(json.dumps(to_har(flows())))
    jsonschema.validate(har, HAR_SCHEMA)
    assert len(har["log"]["entries"]) == 3


def test_entry_contents():
    ok, failed, binary = to_har(flows())["log"]["entries"]
    request = ok["request"]
    assert request["method"] == "POST"
    assert request["url"] == "http://example.com/path?a=1"
    assert request["queryString"] == [{"name": "a", "value": "1"}]
    assert request["cookies"] == [{"name": "a", "value": "b"}, {"name": "c", "value": "d"}]
    assert request["postData"]["text"] == "x=1&y=2"
    assert request["postData"]["params"] == [{"name": "x", "value": "1"}, {"name": "y", "value": "2"}]
    assert ok["response"]["content"]["text"] == "hello"
    assert ok["response"]["cookies"] == [{"name": "s", "value": "1", "path": "/", "httpOnly": True}]
    assert ok["timings"]["connect"] > 0 and ok["timings"]["send"] > 0
    assert ok["serverIPAddress"] == "93.184.216.34"
    assert failed["response"]["status"] == 0
    assert failed["response"]["_error"] == "connect failed"
    content = binary["response"]["content"]
    assert content["encoding"] == "base64"
    assert base64.b64decode(content["text"]) == bytes(range(256))


def test_haralyzer_loads_it(tmp_path):
    path = tmp_path / "out.har"
    with open(path, "w") as fo:
        assert write_har(flows(), fo) == 3
    with open(path) as fo:
        parser = haralyzer.HarParser(json.load(fo))
    [page] = parser.pages
    assert len(page.entries) == 3
    assert page.entries[0].request.method == "POST"
    assert page.entries[0].response.status == 200
