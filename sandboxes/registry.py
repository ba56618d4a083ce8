"""A Confluent Schema Registry sandbox: the REST subset actions-sync uses, in memory.

Avro only, no schema references. Answers JSON as `application/vnd.schemaregistry.v1+json`
and reads any JSON body. Ids are global: the same schema (compared as parsed JSON, so
whitespace and key order do not matter) gets the same id under every subject.
Registration enforces the subject's compatibility level (default BACKWARD) with
`schemas.compatibility` (Apache Avro's checker).

    POST   /subjects/{s}/versions             register -> {"id", "subject", "version", "schema"}
    POST   /subjects/{s}                      look a schema up under a subject
    GET    /subjects                          subject names
    GET    /subjects/{s}/versions             version numbers
    GET    /subjects/{s}/versions/{v}         {"subject", "version", "id", "schema"}; v or "latest"
    DELETE /subjects/{s}[/versions/{v}]       drop a subject (-> its versions) or a version
    GET    /schemas/ids/{id}                  {"schema"}
    POST   /compatibility/subjects/{s}/versions[/{v}]   {"is_compatible"[, "messages"]}
    GET|PUT /config[/{s}], DELETE /config/{s}           compatibility levels
    GET    /associations/resources/{ns}/{topic}         [] (no topic associations)

Errors are `{"error_code", "message"}`: 404 40401 subject, 40402 version, 40403 schema,
40408 no subject-level config; 409 incompatible; 422 42201 invalid schema, 42202 invalid
version, 42203 invalid compatibility level; 500 50001 for injected faults.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Final, cast

import fastavro
from aiohttp import web
from aiohttp.typedefs import Middleware

from sandboxes.base import (
    CODE,
    FaultPlan,
    Faults,
    Handler,
    Journal,
    add_control_routes,
    load_json,
)
from schemas.compatibility import LEVELS, Level, check_compatibility

__all__ = [
    "MEDIA_TYPE",
    "STORE_KEY",
    "RegistryConfig",
    "RegistryError",
    "SchemaStore",
    "Version",
    "create_app",
]

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"

# Confluent error code -> HTTP status
STATUS: Final[dict[int, int]] = {
    400: 400,
    40401: 404,
    40402: 404,
    40403: 404,
    40408: 404,
    409: 409,
    42201: 422,
    42202: 422,
    42203: 422,
    50001: 500,
}


@dataclass(frozen=True)
class RegistryConfig:
    """Knobs of the registry sandbox: the starting global level and the fault plan."""

    compatibility: Level = "BACKWARD"
    faults: FaultPlan = field(default_factory=FaultPlan)


class RegistryError(Exception):
    """A registry answer other than success, carrying Confluent's error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Version:
    subject: str
    version: int
    id: int
    schema: str

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "version": self.version,
            "id": self.id,
            "schema": self.schema,
        }


def _parse_schema(text: object) -> tuple[Any, str]:
    """The schema as JSON and its canonical text (sorted keys, no whitespace), or 42201."""
    try:
        schema = json.loads(cast(str, text))
        fastavro.parse_schema(schema, named_schemas={})
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise RegistryError(42201, f"Invalid schema: {exc}") from exc
    return schema, json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _parse_level(level: object) -> Level:
    if level not in LEVELS:
        raise RegistryError(42203, f"Invalid compatibility level {level!r}; one of {list(LEVELS)}")
    return level


class SchemaStore:
    """Subjects, versions, ids and compatibility levels; every method is thread-safe."""

    def __init__(self, compatibility: Level = "BACKWARD") -> None:
        self._lock = threading.RLock()
        self._ids: dict[str, int] = {}  # canonical text -> id
        self._texts: dict[int, str] = {}  # id -> compact schema text
        self._subjects: dict[str, list[Version]] = {}
        self._levels: dict[str, Level] = {}
        self.compatibility = compatibility

    def register(self, subject: str, text: object) -> Version:
        schema, canonical = _parse_schema(text)
        with self._lock:
            versions = self._subjects.get(subject, [])
            known = self._ids.get(canonical)
            existing = next((v for v in versions if v.id == known), None)
            if existing is not None:
                return existing
            if reasons := self._incompatibilities(subject, schema, versions):
                raise RegistryError(
                    409,
                    f"Schema being registered is incompatible with an "
                    f'earlier schema for subject "{subject}", details: {reasons}',
                )
            schema_id = known or self._new_id(canonical, schema)
            number = versions[-1].version + 1 if versions else 1
            version = Version(subject, number, schema_id, self._texts[schema_id])
            self._subjects[subject] = [*versions, version]
            return version

    def test(self, subject: str, text: object, version: str | None) -> list[str]:
        """Why `text` breaks the subject's level: against `version`, or as registering would."""
        schema, _ = _parse_schema(text)
        with self._lock:
            if version is None or (version == "latest" and subject not in self._subjects):
                return self._incompatibilities(subject, schema, self._subjects.get(subject, []))
            one = self.version(subject, version)
            level = cast(Level, self.level(subject).removesuffix("_TRANSITIVE"))
            return check_compatibility(level, schema, [json.loads(one.schema)])

    def lookup(self, subject: str, text: object) -> Version:
        _, canonical = _parse_schema(text)
        with self._lock:
            schema_id = self._ids.get(canonical)
            found = next((v for v in self.versions(subject) if v.id == schema_id), None)
            if found is None:
                raise RegistryError(40403, "Schema not found")
            return found

    def schema(self, schema_id: int) -> str:
        with self._lock:
            if schema_id not in self._texts:
                raise RegistryError(40403, "Schema not found")
            return self._texts[schema_id]

    def subjects(self) -> list[str]:
        with self._lock:
            return sorted(self._subjects)

    def versions(self, subject: str) -> list[Version]:
        with self._lock:
            if subject not in self._subjects:
                raise RegistryError(40401, f"Subject '{subject}' not found.")
            return list(self._subjects[subject])

    def version(self, subject: str, version: str) -> Version:
        versions = self.versions(subject)
        if version in ("latest", "-1"):
            return versions[-1]
        if not version.isdigit() or int(version) < 1:
            raise RegistryError(
                42202,
                f"The specified version '{version}' is not a valid "
                'version id. Allowed values are [1, 2^31-1] and "latest"',
            )
        found = next((v for v in versions if v.version == int(version)), None)
        if found is None:
            raise RegistryError(40402, f"Version {version} not found.")
        return found

    def delete_subject(self, subject: str) -> list[int]:
        with self._lock:
            deleted = self.versions(subject)
            del self._subjects[subject]
            return [v.version for v in deleted]

    def delete_version(self, subject: str, version: str) -> int:
        with self._lock:
            gone = self.version(subject, version)
            rest = [v for v in self._subjects[subject] if v != gone]
            if rest:
                self._subjects[subject] = rest
            else:
                del self._subjects[subject]
            return gone.version

    def level(self, subject: str | None = None, default_to_global: bool = True) -> Level:
        with self._lock:
            if subject is None or (subject not in self._levels and default_to_global):
                return self.compatibility
            if subject not in self._levels:
                raise RegistryError(
                    40408,
                    f"Subject '{subject}' does not have subject-level compatibility configured",
                )
            return self._levels[subject]

    def set_level(self, subject: str | None, level: object) -> Level:
        checked = _parse_level(level)
        with self._lock:
            if subject is None:
                self.compatibility = checked
            else:
                self._levels[subject] = checked
            return checked

    def clear_level(self, subject: str) -> Level:
        with self._lock:
            previous = self.level(subject, default_to_global=False)
            del self._levels[subject]
            return previous

    def _incompatibilities(self, subject: str, schema: Any, versions: list[Version]) -> list[str]:
        olds = [json.loads(v.schema) for v in versions]
        return check_compatibility(self.level(subject), schema, olds)

    def _new_id(self, canonical: str, schema: Any) -> int:
        schema_id = len(self._texts) + 1
        self._ids[canonical] = schema_id
        self._texts[schema_id] = json.dumps(schema, separators=(",", ":"))
        return schema_id


STORE_KEY = web.AppKey("registry", SchemaStore)


# -- HTTP --------------------------------------------------------------------------------


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, content_type=MEDIA_TYPE)


def _error(code: int, message: str) -> web.Response:
    response = _json({"error_code": code, "message": message}, status=STATUS[code])
    response[CODE] = str(code)
    return response


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = load_json(await request.text() or "{}")
    except ValueError as exc:  # not UTF-8, not JSON, nested too deeply, a 5000-digit number
        raise RegistryError(400, f"Malformed JSON body: {exc}") from exc
    if not isinstance(body, dict):
        raise RegistryError(400, "The body must be a JSON object")
    return body


async def _schema_text(request: web.Request) -> object:
    """The `schema` of a register / lookup / test body; Avro without references only."""
    body = await _body(request)
    if body.get("schemaType", "AVRO") != "AVRO":
        raise RegistryError(42201, f"Unsupported schemaType {body['schemaType']!r}: AVRO only")
    if body.get("references"):
        raise RegistryError(42201, "Schema references are not supported by this sandbox")
    return body.get("schema")


def _store(request: web.Request) -> SchemaStore:
    return request.app[STORE_KEY]


def _subject(request: web.Request) -> str:
    return request.match_info["subject"]


async def register(request: web.Request) -> web.Response:
    version = _store(request).register(_subject(request), await _schema_text(request))
    return _json(version.as_json())


async def lookup(request: web.Request) -> web.Response:
    version = _store(request).lookup(_subject(request), await _schema_text(request))
    return _json(version.as_json())


async def list_subjects(request: web.Request) -> web.Response:
    return _json(_store(request).subjects())


async def list_versions(request: web.Request) -> web.Response:
    return _json([v.version for v in _store(request).versions(_subject(request))])


async def get_version(request: web.Request) -> web.Response:
    version = _store(request).version(_subject(request), request.match_info["version"])
    return _json(version.as_json())


async def delete_subject(request: web.Request) -> web.Response:
    return _json(_store(request).delete_subject(_subject(request)))


async def delete_version(request: web.Request) -> web.Response:
    store, version = _store(request), request.match_info["version"]
    return _json(store.delete_version(_subject(request), version))


async def get_schema(request: web.Request) -> web.Response:
    return _json({"schema": _store(request).schema(int(request.match_info["id"]))})


async def test_compatibility(request: web.Request) -> web.Response:
    version = request.match_info.get("version")
    reasons = _store(request).test(_subject(request), await _schema_text(request), version)
    answer: dict[str, Any] = {"is_compatible": not reasons}
    if request.query.get("verbose", "").lower() == "true":
        answer["messages"] = reasons
    return _json(answer)


async def get_config(request: web.Request) -> web.Response:
    subject = request.match_info.get("subject")
    default_to_global = request.query.get("defaultToGlobal", "").lower() == "true"
    return _json({"compatibilityLevel": _store(request).level(subject, default_to_global)})


async def put_config(request: web.Request) -> web.Response:
    body = await _body(request)
    level = _store(request).set_level(request.match_info.get("subject"), body.get("compatibility"))
    return _json({"compatibility": level})


async def delete_config(request: web.Request) -> web.Response:
    return _json({"compatibilityLevel": _store(request).clear_level(_subject(request))})


async def list_associations(_: web.Request) -> web.Response:
    # confluent-kafka's default subject-name strategy first asks which subjects are
    # associated with the topic; none are here, so it falls back to `<topic>-value`.
    return _json([])


def _fault_middleware(faults: Faults) -> Middleware:
    @web.middleware
    async def inject(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sandbox/"):
            return await handler(request)
        await faults.delay()
        if faults.roll(faults.plan.error_rate):
            return _error(50001, "Error in the backend data store (sandbox fault)")
        try:
            return await handler(request)
        except RegistryError as exc:
            return _error(exc.code, exc.message)

    return inject


def create_app(config: RegistryConfig | None = None) -> web.Application:
    """The registry sandbox as an aiohttp application (run it with `sandboxes.base`)."""
    config = config or RegistryConfig()
    app = web.Application()
    faults = Faults(config.faults)
    add_control_routes(app, Journal(), faults)
    app.middlewares.append(_fault_middleware(faults))
    app[STORE_KEY] = SchemaStore(config.compatibility)
    subject, version = "/subjects/{subject}", "/versions/{version}"
    app.router.add_post(f"{subject}/versions", register)
    app.router.add_post(subject, lookup)
    app.router.add_get("/subjects", list_subjects)
    app.router.add_get(f"{subject}/versions", list_versions)
    app.router.add_get(f"{subject}{version}", get_version)
    app.router.add_delete(subject, delete_subject)
    app.router.add_delete(f"{subject}{version}", delete_version)
    app.router.add_get(r"/schemas/ids/{id:\d+}", get_schema)
    app.router.add_post(f"/compatibility{subject}/versions", test_compatibility)
    app.router.add_post(f"/compatibility{subject}{version}", test_compatibility)
    for path in ("/config", "/config/{subject}"):
        app.router.add_get(path, get_config)
        app.router.add_put(path, put_config)
    app.router.add_delete("/config/{subject}", delete_config)
    app.router.add_get("/associations/resources/{namespace}/{name}", list_associations)
    return app
