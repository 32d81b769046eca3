"""GraphQL beside REST: ``POST /graphql`` (and ``GET /graphql?query=``) over the same service.

The schema, with the field names of the REST JSON (snake_case), so that the two answers
compare key for key::

    type Query { customer(id: ID!): Customer! }
    type Customer {
      id: ID!
      profile: CustomerProfile!                        # GET  /v1/customers/{id}/profile
      segment: String                                  # its segment
      recommendations(k: Int = 10): Recommendations!   # GET  /v1/customers/{id}/recommendations
      decision(context: DecideContext): Decision!      # POST /v1/decide (audited)
      assessment(profile: JSON!, age: Int): Assessment! # POST /v1/assess
    }

The object types are generated from the pydantic response models of
:mod:`serve_deployments.schemas` (a ``dict`` field is a ``JSON`` scalar), and every argument
is validated by the REST request models, so neither the fields nor the rules can drift. The
resolvers call the same :class:`~serve_deployments.service.DecisionService` methods as the
REST routes: a decision made here is audited and counted like one made there.

One query cannot do unbounded work (:class:`Limits`): its size in characters and lexical
tokens, its depth, the number of root fields, aliases and repeated selections, and its cost
(:data:`FIELD_COST`; ``recommendations`` costs its ``k``), all counted before the query is
validated (validation itself can take long: see :func:`analyse`) or run. Introspection is
allowed and counted like any other field. Rate limits: the route's API-key dependency takes
one token, and a query takes one more for each service call beyond the first (``profile``,
``segment``, ``recommendations``, ``decision``, ``assessment``): what the same answers cost as
REST requests.

Errors are GraphQL-style (``{"errors": [{"message", "extensions": {"code"}}]}``) with the HTTP
status REST would give: 422 for a query that breaks a rule (the message names it, e.g.
``query depth 9 exceeds the limit 6``) or bad arguments (naming the field), 503 when a model
or backing service is missing, 405 for a decision asked for by GET (it has side effects).
Messages never echo values from the query or its variables (customer ids are personal data).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import HTTPException, Request
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLError,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    InlineFragmentNode,
    NamedTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    execute,
    get_named_type,
    get_operation_ast,
    parse,
    validate,
    value_from_ast_untyped,
)
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.pyutils import is_awaitable
from graphql.type import SchemaMetaFieldDef, TypeMetaFieldDef, TypeNameMetaFieldDef
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from ddso.errors import ServiceError, UserError
from ddso.schemas.base import Id
from ddso.security.ratelimit import enforce
from ddso.security.validation import describe_errors
from serve_deployments.schemas import (
    AssessRequest,
    AssessResponse,
    DecideContext,
    DecideRequest,
    DecideResponse,
    ProfileResponse,
    ReasonOut,
    Recommendation,
    RecommendationsResponse,
)
from serve_deployments.service import DecisionService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one query may ask for; each is checked before anything runs."""

    max_query_chars: int = 8_000
    max_tokens: int = 2_000
    """Lexical tokens of the query (the parser stops there)."""
    max_depth: int = 15
    """Nested selections. The data schema is 4 deep and has no cycles; the limit is for the
    recursive introspection types, and the standard introspection query is 15 deep."""
    max_cost: int = 250
    """Sum of :data:`FIELD_COST` over the selections; the standard introspection query costs
    220, five customers with every field about 250."""
    max_root_fields: int = 5
    """Selections on ``Query`` (aliases included): customers looked up per query."""
    max_aliases: int = 10
    max_duplicates: int = 20
    """Fields selected again under a response path already selected (by overlapping
    fragments, say). Validation compares each such pair: 245 copies of one field take
    100-200 ms to validate."""


LIMITS = Limits()
DEFAULT_K = 10
"""``recommendations``'s ``k`` when not given; the REST route's default."""
K_RANGE = (1, 50)
"""The bounds of ``k``, as the REST route's ``Query(ge=1, le=50)``."""
FIELD_COST = {("Customer", "decision"): 10, ("Customer", "assessment"): 10}
"""Cost of a field beyond 1, the default; ``Customer.recommendations`` costs its ``k``."""
SERVICE_FIELDS = frozenset(
    ("Customer", f) for f in ("profile", "segment", "recommendations", "decision", "assessment")
)
"""The fields that call the service: one rate-limit token each, like their REST requests."""

# --- schema ---------------------------------------------------------------------------------

JSON = GraphQLScalarType(
    "JSON",
    description="Any JSON value: maps of the REST answers and the assessment's profile input.",
    serialize=lambda value: value,
    parse_value=lambda value: value,
    parse_literal=lambda node, variables=None: value_from_ast_untyped(node, variables),
)
_SCALARS = {str: GraphQLString, int: GraphQLInt, float: GraphQLFloat, bool: GraphQLBoolean}
_TYPE_NAMES = {
    ProfileResponse: "CustomerProfile",
    RecommendationsResponse: "Recommendations",
    Recommendation: "Recommendation",
    DecideResponse: "Decision",
    ReasonOut: "Reason",
    AssessResponse: "Assessment",
}


def _graphql_type(annotation: Any, objects: dict[type, GraphQLObjectType]) -> Any:
    """The GraphQL type of a pydantic field's annotation (non-null unless it allows None)."""
    nullable = False
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not NoneType]
        nullable = len(args) < len(get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"no GraphQL type for the union {annotation!r}; use a dict or a model")
        annotation = args[0]
    origin = get_origin(annotation)
    if annotation in _SCALARS:
        gql = _SCALARS[annotation]
    elif origin is dict:
        gql = JSON
    elif origin is list:
        gql = GraphQLList(_graphql_type(get_args(annotation)[0], objects))
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        gql = _object_type(annotation, objects)
    else:
        raise TypeError(f"no GraphQL type for {annotation!r}; map it in serve_deployments.graphql")
    return gql if nullable else GraphQLNonNull(gql)


def _object_type(model: type[BaseModel], objects: dict[type, GraphQLObjectType]) -> Any:
    if model not in objects:
        objects[model] = GraphQLObjectType(
            _TYPE_NAMES[model],
            {
                name: GraphQLField(_graphql_type(f.annotation, objects), description=f.description)
                for name, f in model.model_fields.items()
            },
            description=model.__doc__,
        )
    return objects[model]


def _input_type(model: type[BaseModel]) -> GraphQLInputObjectType:
    """A request model of scalar fields as an input type (pydantic still validates it)."""
    return GraphQLInputObjectType(
        model.__name__,
        {
            name: GraphQLInputField(_graphql_type(f.annotation, {}), description=f.description)
            for name, f in model.model_fields.items()
        },
    )


def build_schema() -> GraphQLSchema:
    """The schema of the module docstring, resolvers included."""
    objects: dict[type, GraphQLObjectType] = {}

    def output(model: type[BaseModel]) -> Any:
        return GraphQLNonNull(_object_type(model, objects))

    customer = GraphQLObjectType(
        "Customer",
        {
            "id": GraphQLField(GraphQLNonNull(GraphQLID), resolve=lambda cid, info: cid),
            "profile": GraphQLField(output(ProfileResponse), resolve=_profile),
            "segment": GraphQLField(GraphQLString, resolve=_segment),
            "recommendations": GraphQLField(
                output(RecommendationsResponse),
                {"k": GraphQLArgument(GraphQLInt, default_value=DEFAULT_K,
                                      description="How many items (1-50).")},
                resolve=_recommendations,
            ),
            "decision": GraphQLField(
                output(DecideResponse),
                {"context": GraphQLArgument(_input_type(DecideContext))},
                resolve=_decision,
                description="Decide for this customer and audit it, as POST /v1/decide.",
            ),
            "assessment": GraphQLField(
                output(AssessResponse),
                {
                    "profile": GraphQLArgument(
                        GraphQLNonNull(JSON),
                        description="A financial profile as POST /v1/assess takes it; its "
                        "customer_id may be left out.",
                    ),
                    "age": GraphQLArgument(GraphQLInt),
                },
                resolve=_assessment,
            ),
        },
    )
    query = GraphQLObjectType(
        "Query",
        {
            "customer": GraphQLField(
                GraphQLNonNull(customer),
                {"id": GraphQLArgument(GraphQLNonNull(GraphQLID))},
                resolve=_customer,
            )
        },
    )
    return GraphQLSchema(query)


# --- resolvers ------------------------------------------------------------------------------


class GraphQLRequestError(UserError):
    """A query or argument that breaks a rule: HTTP ``status`` with a GraphQL-style error."""

    def __init__(self, message: str, code: str, status: int = 422, **extensions: Any):
        super().__init__(message)
        self.code = code
        self.status = status
        self.extensions = extensions


@dataclass
class _Context:
    service: DecisionService
    profiles: dict[str, ProfileResponse] = field(default_factory=dict)
    """One profile read per customer and query (``profile`` and ``segment`` share it)."""


_CUSTOMER_ID = TypeAdapter(Id)
_K = TypeAdapter(Annotated[int, Field(ge=K_RANGE[0], le=K_RANGE[1])])


def _validated(adapter: TypeAdapter, value: Any, argument: str) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as e:
        raise _bad_input(e, argument) from None


def _bad_input(e: ValidationError, argument: str) -> GraphQLRequestError:
    fields = [{**d, "field": ".".join(str(p) for p in (argument, *d["loc"]) if p != "")}
              for d in describe_errors(e.errors())]
    message = "; ".join(f"{f['field']}: {f['msg']}" for f in fields)
    return GraphQLRequestError(f"invalid argument {message}", "BAD_USER_INPUT", fields=fields)


async def _customer(_root: None, info: Any, id: str) -> str:
    return _validated(_CUSTOMER_ID, id, "id")


async def _profile_of(context: _Context, customer_id: str) -> ProfileResponse:
    if customer_id not in context.profiles:
        context.profiles[customer_id] = await run_in_threadpool(
            context.service.profile, customer_id
        )
    return context.profiles[customer_id]


async def _profile(customer_id: str, info: Any) -> ProfileResponse:
    return await _profile_of(info.context, customer_id)


async def _segment(customer_id: str, info: Any) -> str | None:
    return (await _profile_of(info.context, customer_id)).segment


async def _recommendations(customer_id: str, info: Any, k: int) -> RecommendationsResponse:
    k = _validated(_K, k, "k")
    return await run_in_threadpool(info.context.service.recommendations, customer_id, k)


async def _decision(customer_id: str, info: Any, context: dict | None = None) -> dict[str, Any]:
    try:
        req = DecideRequest(customer_id=customer_id, context=context or {})
    except ValidationError as e:
        raise _bad_input(e, "") from None
    return info.context.service.decide(req)  # in the event loop, as the REST route runs it


async def _assessment(customer_id: str, info: Any, profile: Any, age: int | None = None
                      ) -> AssessResponse:
    if not isinstance(profile, dict):
        raise GraphQLRequestError("invalid argument profile: must be an object",
                                  "BAD_USER_INPUT")
    if profile.get("customer_id", customer_id) != customer_id:
        raise GraphQLRequestError(
            "invalid argument profile.customer_id: must be the customer's id or left out",
            "BAD_USER_INPUT",
        )
    try:
        req = AssessRequest(profile={**profile, "customer_id": customer_id}, age=age)
    except ValidationError as e:
        raise _bad_input(e, "") from None
    return await info.context.service.assess(req)


SCHEMA = build_schema()

# --- limits ---------------------------------------------------------------------------------


@dataclass
class Analysis:
    """What a query asks for, counted before it is validated or run."""

    depth: int = 0
    cost: int = 0
    root_fields: int = 0
    aliases: int = 0
    duplicates: int = 0
    service_calls: int = 0
    decides: bool = False
    fragments: set[str] = field(default_factory=set)
    """The fragments the operation spreads."""

    @property
    def tokens(self) -> int:
        """Rate-limit tokens: one per service call, at least one."""
        return max(1, self.service_calls)


def analyse(
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: dict[str, Any],
    limits: Limits = LIMITS,
) -> Analysis:
    """Count ``operation`` of ``document`` with its fragments inlined and ``variables``
    (coerced) in its arguments; raise at the first limit it breaks.

    It runs before validation, whose time grows with the square of the fields selected under
    one response path, so it takes unknown fields and fragments as they come (validation
    names them next), walks into them all the same, and never follows a fragment into
    itself. Raising as soon as a count
    passes its limit bounds the walk too (a fragment spread many times is walked as often).
    """
    a = Analysis()
    fragments = {d.name.value: d for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}
    selected: set[tuple[str, ...]] = set()

    def check(value: int, limit: int, what: str, code: str) -> None:
        if value > limit:
            raise GraphQLRequestError(f"{what} {value} exceeds the limit {limit}", code,
                                      limit=limit)

    def fields(selections: SelectionSetNode, parent: Any, spread: frozenset[str]
               ) -> Iterator[tuple[Any, FieldNode]]:
        """The fields of one selection set, each with its parent type, fragments inlined."""
        for node in selections.selections:
            if isinstance(node, FieldNode):
                yield parent, node
            elif isinstance(node, InlineFragmentNode):
                yield from fields(node.selection_set, _on(node.type_condition, parent), spread)
            elif isinstance(node, FragmentSpreadNode) and node.name.value not in spread:
                fragment = fragments.get(node.name.value)
                a.fragments.add(node.name.value)
                if fragment is not None:
                    yield from fields(fragment.selection_set,
                                      _on(fragment.type_condition, parent),
                                      spread | {node.name.value})

    def walk(selections: SelectionSetNode, parent: Any, path: tuple[str, ...]) -> None:
        for owner, node in fields(selections, parent, frozenset()):
            name = node.name.value
            key = (*path, (node.alias or node.name).value)
            definition = _field_definition(owner, name)
            owner_name = getattr(owner, "name", None)
            a.depth = max(a.depth, len(key))
            a.root_fields += len(key) == 1
            a.aliases += node.alias is not None
            a.duplicates += key in selected
            selected.add(key)
            a.cost += _cost(owner_name, name, definition, node, variables)
            a.service_calls += (owner_name, name) in SERVICE_FIELDS
            a.decides |= (owner_name, name) == ("Customer", "decision")
            check(a.depth, limits.max_depth, "query depth", "MAX_DEPTH")
            check(a.root_fields, limits.max_root_fields, "number of root fields",
                  "MAX_ROOT_FIELDS")
            check(a.aliases, limits.max_aliases, "number of aliases", "MAX_ALIASES")
            check(a.duplicates, limits.max_duplicates, "number of repeated selections",
                  "MAX_DUPLICATES")
            check(a.cost, limits.max_cost, "query cost", "MAX_COST")
            if node.selection_set is not None:
                walk(node.selection_set,
                     None if definition is None else get_named_type(definition.type), key)

    walk(operation.selection_set, SCHEMA.query_type, ())
    return a


def _on(condition: NamedTypeNode | None, parent: Any) -> Any:
    return parent if condition is None else SCHEMA.get_type(condition.name.value)


def _field_definition(parent: Any, name: str) -> GraphQLField | None:
    """``parent``'s field ``name``; None when there is none (an invalid query)."""
    meta = {"__typename": TypeNameMetaFieldDef, "__schema": SchemaMetaFieldDef,
            "__type": TypeMetaFieldDef}
    if name in meta:
        return meta[name]
    return parent.fields.get(name) if isinstance(parent, GraphQLObjectType) else None


def _cost(parent: str | None, name: str, definition: GraphQLField | None, node: FieldNode,
          variables: dict[str, Any]) -> int:
    if (parent, name) == ("Customer", "recommendations") and definition is not None:
        try:
            k = get_argument_values(definition, node, variables).get("k")
        except GraphQLError:  # not an Int: validation says so next
            k = None
        return max(1, k if isinstance(k, int) else DEFAULT_K)  # a negative k buys no credit
    return FIELD_COST.get((parent, name), 1)


# --- HTTP -----------------------------------------------------------------------------------


class GraphQLRequest(BaseModel):
    """The body of ``POST /graphql`` (GraphQL over HTTP)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = Field(None, alias="operationName")
    extensions: dict[str, Any] | None = None


async def answer(
    service: DecisionService,
    request: Request,
    key_id: str,
    body: GraphQLRequest,
    read_only: bool = False,
    limits: Limits = LIMITS,
) -> JSONResponse:
    """Run one authenticated query and answer it; ``read_only`` for GET (no decisions)."""
    try:
        document, operation, variables, analysis = _prepare(body, limits)
        if read_only and analysis.decides:
            raise GraphQLRequestError(
                "decision makes and audits a decision: send the query by POST",
                "METHOD_NOT_ALLOWED", status=405)
        burst = request.app.state.security.limiter.burst
        if analysis.tokens > burst:
            raise GraphQLRequestError(
                f"query needs {analysis.tokens} rate-limit tokens, more than the burst "
                f"{burst:g} of an API key; split it", "MAX_RATE_TOKENS", limit=burst)
    except GraphQLRequestError as e:
        return _errors([_error_json(e.args[0], e.code, **e.extensions)], e.status,
                       {"Allow": "POST"} if e.status == 405 else None)
    if analysis.tokens > 1:  # the route's dependency took the first
        enforce(request.app.state.security.limiter, key_id, analysis.tokens - 1)
    result = execute(SCHEMA, document, context_value=_Context(service),
                     variable_values=variables, operation_name=body.operation_name)
    if is_awaitable(result):
        result = await result
    if not result.errors:
        return JSONResponse({"data": result.data})
    described = [_execution_error(e) for e in result.errors]
    status = max(s for s, _, _ in described)
    headers = next((h for _, _, h in described if h), None)
    return _errors([e for _, e, _ in described], status, headers, data=result.data)


async def answer_get(
    service: DecisionService,
    request: Request,
    key_id: str,
    query: str,
    variables: str | None,
    operation_name: str | None,
) -> JSONResponse:
    """``GET /graphql?query=...&variables=<JSON>``: queries only, never a decision."""
    try:
        parsed = json.loads(variables) if variables else None
    except json.JSONDecodeError as e:
        return _errors([_error_json(f"variables is not JSON: {e.msg} at character {e.pos}",
                                    "BAD_REQUEST")], 422)
    if parsed is not None and not isinstance(parsed, dict):
        return _errors([_error_json("variables must be a JSON object", "BAD_REQUEST")], 422)
    body = GraphQLRequest(query=query, variables=parsed, operationName=operation_name)
    return await answer(service, request, key_id, body, read_only=True)


def _prepare(
    body: GraphQLRequest, limits: Limits
) -> tuple[DocumentNode, OperationDefinitionNode, dict[str, Any], Analysis]:
    """The parsed document, its operation, the coerced variables and the analysis, once the
    query passed the limits and validation (in that order: the limits bound validation)."""
    chars = len(body.query)
    if chars > limits.max_query_chars:
        raise GraphQLRequestError(
            f"query size {chars} characters exceeds the limit {limits.max_query_chars}",
            "MAX_QUERY_SIZE", limit=limits.max_query_chars)
    document = _parsed(body.query, limits.max_tokens)
    operation = get_operation_ast(document, body.operation_name)
    if operation is None:
        raise GraphQLRequestError(
            "operationName must name one operation of the document"
            if body.operation_name or len(document.definitions) > 1
            else "the document holds no operation", "BAD_REQUEST")
    if operation.operation is not OperationType.QUERY:
        raise GraphQLRequestError(
            f"{operation.operation.value} is not supported: the schema has queries only",
            "GRAPHQL_VALIDATION_FAILED", **_located(GraphQLError("", operation)))
    coerced = get_variable_values(SCHEMA, operation.variable_definitions,
                                  body.variables or {}, max_errors=1)
    if isinstance(coerced, list):
        name = next((n.variable.name.value for n in coerced[0].nodes or ()
                     if hasattr(n, "variable")), "?")
        raise GraphQLRequestError(f"variable ${name} is missing or not of its declared type",
                                  "BAD_USER_INPUT", **_located(coerced[0]))
    analysis = analyse(document, operation, coerced, limits)
    unused = [d for d in document.definitions if d is not operation and not (
        isinstance(d, FragmentDefinitionNode) and d.name.value in analysis.fragments)]
    if unused:  # validation would read them too, and they were not counted
        names = ", ".join(n.value if (n := getattr(d, "name", None)) else "an unnamed one"
                          for d in unused)
        raise GraphQLRequestError(
            "the document may hold only the operation it runs and the fragments that one "
            f"uses; not used: {names}", "UNUSED_DEFINITIONS")
    _validate(body.query, limits.max_tokens)
    return document, operation, coerced, analysis


# Cached by the query's text: clients send the same few queries with new variables, and
# parsing and validation are most of the time a small query takes (about 1 and 3 ms). A
# parsed document of the most tokens allowed holds about 0.5 MB, hence the small caches.
@functools.lru_cache(maxsize=32)
def _parsed(query: str, max_tokens: int) -> DocumentNode:
    try:
        return parse(query, max_tokens=max_tokens)
    except GraphQLError as e:
        if "tokens. Parsing aborted" in e.message:
            raise GraphQLRequestError(f"query tokens exceed the limit {max_tokens}",
                                      "MAX_TOKENS", limit=max_tokens) from None
        raise GraphQLRequestError(_redact(e.message), "GRAPHQL_PARSE_FAILED",
                                  **_located(e)) from None


@functools.lru_cache(maxsize=256)
def _validate(query: str, max_tokens: int) -> None:
    errors = validate(SCHEMA, _parsed(query, max_tokens))
    if errors:
        e = errors[0]  # the first is enough to fix; all of them could be a long echo
        raise GraphQLRequestError(_redact(e.message), "GRAPHQL_VALIDATION_FAILED",
                                  **_located(e), errors=len(errors))


_QUOTED = re.compile(r'"""[\s\S]*?"""|"(?:[^"\\]|\\.)*"')


def _redact(message: str) -> str:
    """A graphql-core message without the string literals it quotes from the query."""
    return _QUOTED.sub('"…"', message)


def _located(e: GraphQLError) -> dict[str, Any]:
    return {"locations": [{"line": loc.line, "column": loc.column} for loc in e.locations]
            } if e.locations else {}


def _execution_error(e: GraphQLError) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """HTTP status, GraphQL error and headers of an error raised while executing."""
    original = e.original_error
    where = {"path": e.path} if e.path else {}
    if isinstance(original, GraphQLRequestError):
        return original.status, _error_json(original.args[0], original.code, **where,
                                            **original.extensions), None
    if isinstance(original, HTTPException):  # a model that is not loaded: 503
        return original.status_code, _error_json(str(original.detail), "SERVICE_UNAVAILABLE",
                                                 **where), original.headers
    if isinstance(original, ServiceError):
        return 503, _error_json(f"a backing service is unavailable: {original}",
                                "SERVICE_UNAVAILABLE", **where), {"Retry-After": "1"}
    log.error("GraphQL field %s failed", e.path, exc_info=original or e)
    return 500, _error_json("internal error", "INTERNAL_SERVER_ERROR", **where), None


def _error_json(message: str, code: str, **extra: Any) -> dict[str, Any]:
    where = {k: extra.pop(k) for k in ("locations", "path") if k in extra}
    return {"message": message, **where, "extensions": {"code": code, **extra}}


def _errors(errors: list[dict[str, Any]], status: int, headers: dict[str, str] | None = None,
            data: Any = None) -> JSONResponse:
    body = {"errors": errors} if data is None else {"errors": errors, "data": data}
    return JSONResponse(body, status_code=status, headers=headers)
