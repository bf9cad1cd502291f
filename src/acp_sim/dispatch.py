"""Method name -> params model and handler: what a ``Connection`` runs for each request and
notification of its peer, with the params validated (``Invalid params for M: field: what``), and
``Reply``, a handler's result with work to do once the response is on the wire.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from acp_sim.errors import InvalidParams, JsonRpcError, MethodNotFound

# A request handler is called synchronously in arrival order and returns the awaitable that
# produces the result: bookkeeping done before the first await happens before any later message
# is dispatched (the simulated agent relies on it so a cancel right after a prompt is not lost).
RequestHandler = Callable[[Any], Awaitable[Any]]
NotificationHandler = Callable[[Any], Awaitable[None] | None]


@dataclass(slots=True)
class Reply:
    """A request handler's result with work to do once the response is on the wire.

    Real agents send some updates right after a response (Claude Code's
    ``available_commands_update`` follows ``session/new``); ``then`` reproduces that order.
    """

    result: Any
    then: Callable[[], Awaitable[None]] | None = None
    flush: bool = False
    """Write whatever ``Connection.hold`` kept back together with the response, in one write."""


@dataclass(slots=True)
class Route:
    params_model: type[BaseModel] | None
    handler: Callable[[Any], Any]


@dataclass
class Dispatcher:
    """Method name -> params model and handler, for one side of a connection."""

    _requests: dict[str, Route] = field(default_factory=dict)
    _notifications: dict[str, Route] = field(default_factory=dict)
    method_not_found: Callable[[str], JsonRpcError] | None = None
    """The error for a request method with no handler (default: ``Method not found: M``)."""

    def add_request(
        self, method: str, handler: RequestHandler, params_model: type[BaseModel] | None = None
    ) -> None:
        self._requests[method] = Route(params_model, handler)

    def add_notification(
        self, method: str, handler: NotificationHandler, params_model: type[BaseModel] | None = None
    ) -> None:
        self._notifications[method] = Route(params_model, handler)

    def request_route(self, method: str) -> Route:
        route = self._requests.get(method)
        if route is None:
            if self.method_not_found is not None:
                raise self.method_not_found(method)
            raise MethodNotFound(f"Method not found: {method}", data={"method": method})
        return route

    def notification_route(self, method: str) -> Route | None:
        return self._notifications.get(method)


def parse_params(method: str, route: Route, params: Any) -> Any:
    if route.params_model is None:
        return params
    try:
        return route.params_model.model_validate(params if params is not None else {})
    except ValidationError as exc:
        raise validation_error(method, exc) from None


def validation_error(method: str, exc: ValidationError) -> InvalidParams:
    """An InvalidParams naming the pydantic field path of every problem."""
    errors = [
        {"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    first = errors[0]
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return InvalidParams(
        f"Invalid params for {method}: {first['loc'] or '<root>'}: {first['msg']}{more}",
        data={"method": method, "errors": errors},
    )
