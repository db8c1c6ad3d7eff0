"""Google's GoogleSQL analyzer and reference evaluator, offline, set up the way BigQuery is.

The PyPI package `zetasql` is ZetaSQL (the front end BigQuery's dialect is defined by)
compiled to WebAssembly and run in-process by wasmtime. This module uses its local
service directly with ZetaSQL's own protocol buffers: analyze a statement or a script
(statement by statement, with parse-resume) against a catalog of the pipeline's tables
with typed named parameters, and evaluate an expression with the reference
implementation. Compiling the 28 MB module takes ~40 s; the machine code is cached
under .local/zetasql/ and later sessions load it in about a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmtime import Config, Engine, Linker, Module, Store, WasiConfig, WasmtimeError
from zetasql.core.exceptions import ServerError
from zetasql.core.wasm_client import WasmClient, get_tzinfo_dir
from zetasql.wasi import get_wasm_path
from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2 as service_pb2
from zetasql.wasi._pb2.zetasql.proto import options_pb2, simple_catalog_pb2
from zetasql.wasi._pb2.zetasql.public import options_pb2 as public_options_pb2
from zetasql.wasi._pb2.zetasql.public import (
    parse_resume_location_pb2,
    simple_table_pb2,
    type_pb2,
    value_pb2,
)

if TYPE_CHECKING:
    from google.cloud.bigquery import SchemaField

CACHE = Path(__file__).resolve().parent.parent / ".local" / "zetasql"

# Released GoogleSQL features BigQuery does not have; the maximum feature set minus these
# is BigQuery's dialect as far as our statements go. The negative controls in
# tests/test_googlesql.py check that the set rejects what BigQuery rejects.
BIGQUERY_LACKS = frozenset(
    getattr(public_options_pb2, name)
    for name in (
        "FEATURE_JSON_TYPE_COMPARISON",  # JSON = JSON
        "FEATURE_DML_RETURNING",  # INSERT/UPDATE/DELETE ... THEN RETURN
        "FEATURE_V_1_3_DML_RETURNING",
        "FEATURE_V_1_4_INSERT_ON_CONFLICT_CLAUSE",
        "FEATURE_V_1_4_FOR_UPDATE",
        "FEATURE_V_1_4_MAP_TYPE",
        "FEATURE_V_1_4_UUID_TYPE",
        "FEATURE_V_1_4_STRUCT_BRACED_CONSTRUCTORS",
        "FEATURE_V_1_4_BARE_ARRAY_ACCESS",
        "FEATURE_V_1_4_LATERAL_JOIN",
        "FEATURE_V_1_4_TIMESTAMP_PRECISION",
        "FEATURE_V_1_4_TIMESTAMP_PRECISION_ANNOTATION",
        "FEATURE_V_1_4_ORDERED_PRIMARY_KEYS",
        "FEATURE_V_1_4_TTL",
    )
)
# BigQuery writes project ids with dashes (`my-project.dataset.table`).
BIGQUERY_ADDS = frozenset({public_options_pb2.FEATURE_V_1_3_ALLOW_DASHES_IN_TABLE_NAME})

_KINDS = {
    "STRING": type_pb2.TYPE_STRING,
    "INT64": type_pb2.TYPE_INT64,
    "INTEGER": type_pb2.TYPE_INT64,
    "FLOAT64": type_pb2.TYPE_DOUBLE,
    "FLOAT": type_pb2.TYPE_DOUBLE,
    "BOOL": type_pb2.TYPE_BOOL,
    "BOOLEAN": type_pb2.TYPE_BOOL,
    "TIMESTAMP": type_pb2.TYPE_TIMESTAMP,
    "DATETIME": type_pb2.TYPE_DATETIME,
    "DATE": type_pb2.TYPE_DATE,
    "JSON": type_pb2.TYPE_JSON,
    "NUMERIC": type_pb2.TYPE_NUMERIC,
    "BYTES": type_pb2.TYPE_BYTES,
}


class GoogleSqlError(Exception):
    """GoogleSQL refuses a statement: the analyzer's one-line message."""


def bigquery_type(kind: str, array: bool = False) -> type_pb2.TypeProto:
    """The ZetaSQL type of a BigQuery type name (legacy names included)."""
    element = type_pb2.TypeProto(type_kind=_KINDS[kind.upper()])
    if not array:
        return element
    return type_pb2.TypeProto(
        type_kind=type_pb2.TYPE_ARRAY, array_type=type_pb2.ArrayTypeProto(element_type=element)
    )


def parameter_type(parameter: Any) -> type_pb2.TypeProto:
    """The type of a google-cloud-bigquery query parameter, as BigQuery receives it."""
    if hasattr(parameter, "array_type"):  # an ArrayQueryParameter
        return bigquery_type(parameter.array_type, array=True)
    return bigquery_type(parameter.type_)


class GoogleSql:
    """Analyzes statements as BigQuery would, against the given tables."""

    def __init__(self, tables: Mapping[str, Sequence[SchemaField]]) -> None:
        self._client = _client()
        self.language = bigquery_language_options()
        catalog = simple_catalog_pb2.SimpleCatalogProto(
            name="bigquery",
            table=[_table(name, schema) for name, schema in tables.items()],
            builtin_function_options=options_pb2.ZetaSQLBuiltinFunctionOptionsProto(
                language_options=self.language
            ),
        )
        registered = self._call(
            "RegisterCatalog",
            service_pb2.RegisterCatalogRequest(simple_catalog=catalog),
            service_pb2.RegisterResponse,
        )
        self._catalog_id = registered.registered_id

    def close(self) -> None:
        self._call(
            "UnregisterCatalog", service_pb2.UnregisterRequest(registered_id=self._catalog_id)
        )

    def analyze_script(self, sql: str, params: Mapping[str, type_pb2.TypeProto]) -> int:
        """Analyze each statement of a script in turn; how many there were.

        Raises GoogleSqlError at the first statement GoogleSQL refuses.
        """
        return len(self.resolve_script(sql, params))

    def resolve_script(self, sql: str, params: Mapping[str, type_pb2.TypeProto]) -> list[Any]:
        """Each statement of a script as GoogleSQL resolves it (AnyResolvedStatementProto).

        Raises GoogleSqlError at the first statement GoogleSQL refuses.
        """
        options = self._options(params)
        location = parse_resume_location_pb2.ParseResumeLocationProto(
            input=sql, byte_position=0, allow_resume=True
        )
        encoded, resolved = sql.encode(), []
        while encoded[location.byte_position :].strip():
            count = len(resolved)
            request = service_pb2.AnalyzeRequest(
                options=options,
                registered_catalog_id=self._catalog_id,
                parse_resume_location=location,
            )
            try:
                answer = self._call("Analyze", request, service_pb2.AnalyzeResponse)
            except ServerError as error:
                raise GoogleSqlError(f"statement {count + 1}: {error}") from None
            if answer.resume_byte_position <= location.byte_position:
                raise GoogleSqlError(f"statement {count + 1}: the analyzer did not move on")
            location.byte_position = answer.resume_byte_position
            resolved.append(answer.resolved_statement)
        return resolved

    def evaluate(self, expression: str) -> Any:
        """The value of a constant expression by the reference implementation, as Python."""
        request = service_pb2.EvaluateRequest(sql=expression, options=self._options({}))
        try:
            answer = self._call("Evaluate", request, service_pb2.EvaluateResponse)
        except ServerError as error:
            raise GoogleSqlError(str(error)) from None
        self._call(
            "Unprepare",
            service_pb2.UnprepareRequest(
                prepared_expression_id=answer.prepared.prepared_expression_id
            ),
        )
        return python_value(answer.value, answer.prepared.output_type)

    def _options(
        self, params: Mapping[str, type_pb2.TypeProto]
    ) -> options_pb2.AnalyzerOptionsProto:
        return options_pb2.AnalyzerOptionsProto(
            language_options=self.language,
            error_message_mode=public_options_pb2.ERROR_MESSAGE_ONE_LINE,
            default_timezone="UTC",
            query_parameters=[
                options_pb2.AnalyzerOptionsProto.QueryParameterProto(name=name, type=kind)
                for name, kind in params.items()
            ],
        )

    def _call(self, method: str, request: Any, answer: Any = None) -> Any:
        if answer is None:
            self._client._call_grpc_method(
                f"ZetaSqlLocalService_{method}", request.SerializeToString()
            )
            return None
        return self._client.call_grpc_func(f"ZetaSqlLocalService_{method}", request, answer)


# Comparisons BigQuery can eliminate partitions with, when one side is the partition column.
_PRUNING_COMPARISONS = frozenset(
    f"ZetaSQL:${name}"
    for name in ("equal", "less", "less_or_equal", "greater", "greater_or_equal", "between", "in")
)


def scans_without_partition_filter(
    statement: Any, partition_columns: Mapping[str, str]
) -> list[str]:
    """The tables of `partition_columns` (table -> partition column) that a resolved statement
    reads with no filter BigQuery could eliminate partitions with: each scan of one needs,
    in a WHERE above it (a filter scan, or a DELETE's or UPDATE's WHERE), an AND-ed
    comparison of that scan's partition column itself with an expression of no column (a
    parameter, a literal, a function of those). ORed filters, and a function of the column,
    do not count: BigQuery's "filter that can be used for partition elimination".
    """
    unfiltered = []
    for scan, filters in _table_scans(statement, ()):
        table = scan.table.full_name or scan.table.name
        if table not in partition_columns:
            continue
        ids = {c.column_id for c in scan.parent.column_list if c.name == partition_columns[table]}
        if not any(_prunes(conjunct, ids) for f in filters for conjunct in _conjuncts(f)):
            unfiltered.append(table)
    return unfiltered


# The table an INSERT or MERGE writes is a table scan in the resolved statement, not a read.
_WRITTEN_NOT_READ = {
    ("ResolvedInsertStmtProto", "table_scan"),
    ("ResolvedMergeStmtProto", "table_scan"),
}


def _table_scans(node: Any, filters: tuple[Any, ...]) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """Each table scan under a resolved node, with the WHERE expressions above it."""
    kind = node.DESCRIPTOR.name
    if kind == "ResolvedTableScanProto":
        yield node, filters
    elif kind == "ResolvedFilterScanProto":
        filters = (*filters, node.filter_expr)
    elif kind in ("ResolvedDeleteStmtProto", "ResolvedUpdateStmtProto"):
        filters = (*filters, node.where_expr)
    for field, value in node.ListFields():
        if field.message_type is None or (kind, field.name) in _WRITTEN_NOT_READ:
            continue
        for child in value if field.is_repeated else (value,):
            yield from _table_scans(child, filters)


def _function_call(expression: Any) -> Any | None:
    """The ResolvedFunctionCallBaseProto of an AnyResolvedExprProto, if it is a call."""
    base = expression.resolved_function_call_base_node
    kind = base.WhichOneof("node")
    return getattr(base, kind).parent if kind else None


def _conjuncts(expression: Any) -> Iterator[Any]:
    call = _function_call(expression)
    if call is not None and call.function.name == "ZetaSQL:$and":
        for argument in call.argument_list:
            yield from _conjuncts(argument)
    else:
        yield expression


def _prunes(conjunct: Any, partition_ids: set[int]) -> bool:
    call = _function_call(conjunct)
    if call is None or call.function.name not in _PRUNING_COMPARISONS:
        return False
    sides = [_column_ids(argument) for argument in call.argument_list]
    column = [
        i for i, a in enumerate(call.argument_list)
        if a.WhichOneof("node") == "resolved_column_ref_node"
        and a.resolved_column_ref_node.column.column_id in partition_ids
    ]  # fmt: skip
    return bool(column) and all(not ids for i, ids in enumerate(sides) if i != column[0])


def _column_ids(node: Any) -> set[int]:
    """Every column an expression refers to."""
    if node.DESCRIPTOR.name == "ResolvedColumnRefProto":
        return {node.column.column_id}
    found: set[int] = set()
    for field, value in node.ListFields():
        if field.message_type is not None:
            for child in value if field.is_repeated else (value,):
                found |= _column_ids(child)
    return found


def bigquery_language_options() -> options_pb2.LanguageOptionsProto:
    """PRODUCT_EXTERNAL (no protos, no INT32/UINT, ...), every released feature BigQuery has."""
    client = _client()
    maximum = client.call_grpc_func(
        "ZetaSqlLocalService_GetLanguageOptions",
        service_pb2.LanguageOptionsRequest(maximum_features=True),
        options_pb2.LanguageOptionsProto,
    )
    features = (set(maximum.enabled_language_features) - BIGQUERY_LACKS) | BIGQUERY_ADDS
    return options_pb2.LanguageOptionsProto(
        name_resolution_mode=maximum.name_resolution_mode,
        product_mode=public_options_pb2.PRODUCT_EXTERNAL,
        enabled_language_features=sorted(features),
        # no supported_statement_kinds: every kind, DDL, DML and transactions included
    )


def _table(name: str, schema: Iterable[SchemaField]) -> simple_table_pb2.SimpleTableProto:
    return simple_table_pb2.SimpleTableProto(
        name=name,
        column=[simple_table_pb2.SimpleColumnProto(name=f.name, type=_type(f)) for f in schema],
    )


def _type(field: SchemaField) -> type_pb2.TypeProto:
    """A column's type; a RECORD (STRUCT) from its sub-fields, REPEATED as an ARRAY."""
    if field.field_type.upper() not in ("RECORD", "STRUCT"):
        return bigquery_type(field.field_type, array=field.mode == "REPEATED")
    struct = type_pb2.TypeProto(
        type_kind=type_pb2.TYPE_STRUCT,
        struct_type=type_pb2.StructTypeProto(
            field=[
                type_pb2.StructFieldProto(field_name=f.name, field_type=_type(f))
                for f in field.fields
            ]
        ),
    )
    if field.mode != "REPEATED":
        return struct
    return type_pb2.TypeProto(
        type_kind=type_pb2.TYPE_ARRAY, array_type=type_pb2.ArrayTypeProto(element_type=struct)
    )


def python_value(value: value_pb2.ValueProto, kind: type_pb2.TypeProto) -> Any:
    """A ZetaSQL value as the Python value google-cloud-bigquery would return for it."""
    field = value.WhichOneof("value")
    if field is None:
        return None
    if kind.type_kind == type_pb2.TYPE_STRUCT:
        return {
            f.field_name: python_value(v, f.field_type)
            for f, v in zip(kind.struct_type.field, value.struct_value.field, strict=True)
        }
    if kind.type_kind == type_pb2.TYPE_ARRAY:
        element = kind.array_type.element_type
        return [python_value(v, element) for v in value.array_value.element]
    if field == "timestamp_value":
        stamp = value.timestamp_value
        return datetime.fromtimestamp(stamp.seconds, UTC).replace(microsecond=stamp.nanos // 1000)
    if field == "json_value":
        return json.loads(value.json_value)
    if field == "datetime_value":
        bits = value.datetime_value.bit_field_datetime_seconds
        return datetime(
            bits >> 26, (bits >> 22) & 0xF, (bits >> 17) & 0x1F,
            (bits >> 12) & 0x1F, (bits >> 6) & 0x3F, bits & 0x3F,
            value.datetime_value.nanos // 1000,
        )  # fmt: skip
    return getattr(value, field)


@cache
def _client() -> WasmClient:
    return _CachedWasmClient()


class _CachedWasmClient(WasmClient):
    """zetasql's WasmClient, with the compiled module cached on disk (the package has none)."""

    def __init__(self) -> None:  # same set-up as WasmClient.__init__, but for the module
        wasi = WasiConfig()
        wasi.inherit_stdout()
        wasi.inherit_stderr()
        if zoneinfo := get_tzinfo_dir():
            wasi.preopen_dir(zoneinfo, "/usr/share/zoneinfo")
        config = Config()
        with contextlib.suppress(AttributeError):
            config.shared_memory = True
        engine = Engine(config)
        self.store = Store(engine)
        self.store.set_wasi(wasi)
        self.module = _compiled_module(engine)
        linker = Linker(engine)
        linker.define_wasi()
        self.instance = linker.instantiate(self.store, self.module)
        self.exports = self.instance.exports(self.store)
        if "_initialize" in self.exports:
            self.exports["_initialize"](self.store)
        self.memory = self.exports["memory"]


def _compiled_module(engine: Engine) -> Module:
    """The module from the cache, compiled and cached first if needed.

    The file is keyed by both packages' versions (wasmtime refuses machine code from
    another version) and written to a temporary name then renamed, so sessions that
    compile at the same time each install a whole file.
    """
    cached = CACHE / f"zetasql-{version('zetasql')}-wasmtime-{version('wasmtime')}.cwasm"
    if cached.exists():
        with contextlib.suppress(WasmtimeError):  # a stale or foreign file: compile again
            return Module.deserialize_file(engine, str(cached))
    module = Module.from_file(engine, str(get_wasm_path()))
    CACHE.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=CACHE, suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(module.serialize())
        Path(partial).replace(cached)
    finally:
        Path(partial).unlink(missing_ok=True)
    return module


def main() -> None:
    """Compile (or load) the cached module: `make test` runs this before the tests."""
    started = time.monotonic()
    _client()
    print(f"GoogleSQL analyzer ready in {time.monotonic() - started:.1f} s ({CACHE})")


if __name__ == "__main__":
    main()
