"""Add a custom version of the gRPC/protobuf content view, which parses
protobuf messages based on a user defined rule set."""
from fastproxy import contentviews
from fastproxy.addonmanager import Loader
from fastproxy.contentviews.grpc import ProtoParser
from fastproxy.contentviews.grpc import ViewConfig
from fastproxy.contentviews.grpc import ViewGrpcProtobuf

config: ViewConfig = ViewConfig()
config.parser_rules = [
    ProtoParser.ParserRuleRequest(
        name="Geo coordinate lookup request",
        filter="example\\.com.*/ReverseGeocode",
        field_definitions=[
            ProtoParser.ParserFieldDefinition(tag="1", name="position"),
            ProtoParser.ParserFieldDefinition(tag="1.1", name="latitude",
                                              intended_decoding=ProtoParser.DecodedTypes.double),
        ],
    ),
]


class ViewGrpcWithRules(ViewGrpcProtobuf):
    name = "customized gRPC/protobuf"

    def __init__(self) -> None:
        super().__init__(config=config)


view = ViewGrpcWithRules()


def load(loader: Loader):
    contentviews.add(view)


def done():
    contentviews.remove(view)
