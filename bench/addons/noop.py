"""A no-op addon that listens to `request` and `response`: the cost of having any
Python hook on the path (fastproxy then builds flows and gathers bodies)."""


class NoOp:
    def request(self, flow) -> None:
        pass

    def response(self, flow) -> None:
        pass


addons = [NoOp()]
