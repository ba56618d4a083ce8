"""A SOQL subset: tokenizer, recursive-descent parser, syntax tree.

    query     := SELECT (COUNT '(' ')' | field (',' field)*) FROM object
                 [WHERE condition] [ORDER BY order (',' order)*] [LIMIT n] [OFFSET n]
    condition := [NOT] term ((AND term)+ | (OR term)+)?
    term      := '(' condition ')' | field op literal | field [NOT] IN '(' literal, ... ')'
                 | field LIKE string
    order     := field [ASC | DESC] [NULLS (FIRST | LAST)]
    literal   := 'string' | number | true | false | null | 2026-01-01 | 2026-01-01T00:00:00Z

As in Salesforce, keywords are case-insensitive, AND and OR cannot be mixed at one level
without parentheses (`a AND b OR c` is MALFORMED_QUERY: "unexpected token: 'OR'"), and NOT
only opens a condition (`a AND NOT b` is refused; write `a AND (NOT b)`). Datetime
literals carry a zone (`Z`, `+0000`, `-08:00`) and milliseconds are optional.
`parse()` raises `SoqlError("MALFORMED_QUERY", ...)`; `soql_eval` binds fields to an object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

__all__ = [
    "BoolOp",
    "Compare",
    "Expr",
    "FieldRef",
    "InList",
    "Like",
    "Not",
    "OrderItem",
    "Query",
    "SoqlError",
    "Value",
    "parse",
    "tokenize",
]

MAX_LENGTH = 100_000  # characters in one SOQL statement
MAX_OFFSET = 2000
_KEYWORDS = {
    "select",
    "from",
    "where",
    "and",
    "or",
    "not",
    "in",
    "like",
    "order",
    "by",
    "asc",
    "desc",
    "nulls",
    "first",
    "last",
    "limit",
    "offset",
    "true",
    "false",
    "null",
    "count",
}
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2}))(?![\w:.])
  | (?P<bad_datetime>\d{4}-\d{2}-\d{2}T\S*)
  | (?P<date>\d{4}-\d{2}-\d{2})(?![\w:])
  | (?P<number>[+-]?\d+(?:\.\d+)?)(?![\w.])
  | (?P<string>'(?:[^'\\\n]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
""",
    re.VERBOSE,
)
_ESCAPES = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    "'": "'",
    '"': '"',
    "\\": "\\",
    "%": "%",
    "_": "_",
}


class SoqlError(Exception):
    """A query Salesforce would refuse: `code` is MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Token(NamedTuple):
    kind: str  # ws-free kinds of _TOKEN, keywords as "kw", and "eof"
    text: str
    value: Any
    pos: int


@dataclass(frozen=True)
class Value:
    kind: Literal["string", "number", "boolean", "null", "datetime", "date"]
    value: Any
    raw: str  # source text; LIKE patterns are read from it, escapes included


@dataclass(frozen=True)
class FieldRef:
    name: str
    pos: int


@dataclass(frozen=True)
class Compare:
    field: FieldRef
    op: str  # = != < > <= >=
    value: Value


@dataclass(frozen=True)
class InList:
    field: FieldRef
    values: tuple[Value, ...]
    negated: bool


@dataclass(frozen=True)
class Like:
    field: FieldRef
    pattern: Value


@dataclass(frozen=True)
class Not:
    item: Expr


@dataclass(frozen=True)
class BoolOp:
    op: Literal["AND", "OR"]
    items: tuple[Expr, ...]


Expr = Compare | InList | Like | Not | BoolOp


@dataclass(frozen=True)
class OrderItem:
    field: FieldRef
    descending: bool = False
    nulls_last: bool = False  # Salesforce: NULLS FIRST for ASC, NULLS LAST for DESC


@dataclass(frozen=True)
class Query:
    fields: tuple[FieldRef, ...]  # empty for SELECT COUNT()
    sobject: FieldRef
    where: Expr | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None

    @property
    def is_count(self) -> bool:
        return not self.fields


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with an `eof` token; raises SoqlError on a bad character."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup == "bad_datetime":
            raise _malformed(text, pos, f"no viable alternative at character '{text[pos]}'")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_token(text, kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("eof", "<EOF>", None, len(text)))
    return tokens


def parse(text: str) -> Query:
    """The syntax tree of one SOQL statement."""
    if len(text) > MAX_LENGTH:
        raise SoqlError("MALFORMED_QUERY", f"query is longer than {MAX_LENGTH} characters")
    return _Parser(text).query()


def _token(text: str, kind: str, lexeme: str, pos: int) -> Token:
    if kind == "ident" and lexeme.lower() in _KEYWORDS:
        return Token("kw", lexeme.upper(), lexeme.upper(), pos)
    if kind == "number":
        return Token(kind, lexeme, float(lexeme) if "." in lexeme else int(lexeme), pos)
    if kind == "string":
        return Token(kind, lexeme, _unescape(text, lexeme[1:-1], pos), pos)
    return Token(kind, lexeme, lexeme, pos)


def _unescape(text: str, body: str, pos: int) -> str:
    out, i = [], 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            escaped = body[i + 1]
            if escaped not in _ESCAPES:
                raise _malformed(text, pos + i + 1, f"Invalid string literal escape: \\{escaped}")
            out.append(_ESCAPES[escaped])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _malformed(text: str, pos: int, message: str) -> SoqlError:
    row = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return SoqlError("MALFORMED_QUERY", f"\n{text}\nERROR at Row:{row}:Column:{column}\n{message}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # -- token helpers --------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    def at(self, *keywords: str) -> bool:
        return self.tok.kind == "kw" and self.tok.text in keywords

    def accept(self, keyword: str) -> bool:
        if self.at(keyword):
            self.advance()
            return True
        return False

    def expect_kw(self, keyword: str) -> Token:
        if not self.at(keyword):
            raise self.unexpected(f"expecting '{keyword}'")
        return self.advance()

    def expect(self, kind: str, text: str | None = None) -> Token:
        if self.tok.kind != kind or (text is not None and self.tok.text != text):
            raise self.unexpected()
        return self.advance()

    def unexpected(self, hint: str = "") -> SoqlError:
        message = f"unexpected token: '{self.tok.text}'" + (f" ({hint})" if hint else "")
        return _malformed(self.text, self.tok.pos, message)

    # -- grammar --------------------------------------------------------------------------

    def query(self) -> Query:
        self.expect_kw("SELECT")
        fields = self.select_list()
        self.expect_kw("FROM")
        sobject = self.field()
        where = self.condition() if self.accept("WHERE") else None
        order_by: tuple[OrderItem, ...] = ()
        if self.accept("ORDER"):
            self.expect_kw("BY")
            order_by = self.order_list()
        limit = self.count_clause("LIMIT", None)
        offset = self.count_clause("OFFSET", MAX_OFFSET)
        if self.tok.kind != "eof":
            raise self.unexpected()
        return Query(fields, sobject, where, order_by, limit, offset)

    def select_list(self) -> tuple[FieldRef, ...]:
        if self.accept("COUNT"):
            self.expect("punct", "(")
            self.expect("punct", ")")
            return ()
        fields = [self.field()]
        while self.tok.text == "," and self.tok.kind == "punct":
            self.advance()
            fields.append(self.field())
        return tuple(fields)

    def field(self) -> FieldRef:
        token = self.expect("ident")
        return FieldRef(token.text, token.pos)

    def condition(self) -> Expr:
        first: Expr = Not(self.term()) if self.accept("NOT") else self.term()
        if not self.at("AND", "OR"):
            return first
        op = self.tok.text
        items = [first]
        while self.at("AND", "OR"):
            if self.tok.text != op:
                raise self.unexpected("use parentheses to mix AND and OR")
            self.advance()
            items.append(self.term())
        return BoolOp("AND" if op == "AND" else "OR", tuple(items))

    def term(self) -> Expr:
        if self.tok.text == "(" and self.tok.kind == "punct":
            self.advance()
            inner = self.condition()
            self.expect("punct", ")")
            return inner
        field = self.field()
        if self.accept("LIKE"):
            return Like(field, self.literal(allowed=("string",)))
        negated = self.accept("NOT")
        if negated or self.at("IN"):
            self.expect_kw("IN")
            return InList(field, self.literal_list(), negated)
        op = self.expect("op").text
        return Compare(field, "!=" if op == "<>" else op, self.literal())

    def literal_list(self) -> tuple[Value, ...]:
        self.expect("punct", "(")
        values = [self.literal()]
        while self.tok.text == "," and self.tok.kind == "punct":
            self.advance()
            values.append(self.literal())
        self.expect("punct", ")")
        return tuple(values)

    def literal(self, allowed: tuple[str, ...] | None = None) -> Value:
        token = self.tok
        value = _literal_of(token)
        if value is None or (allowed and value.kind not in allowed):
            raise self.unexpected("expecting a literal value")
        self.advance()
        return value

    def order_list(self) -> tuple[OrderItem, ...]:
        items = [self.order_item()]
        while self.tok.text == "," and self.tok.kind == "punct":
            self.advance()
            items.append(self.order_item())
        return tuple(items)

    def order_item(self) -> OrderItem:
        field = self.field()
        descending = self.accept("DESC")
        if not descending:
            self.accept("ASC")
        nulls_last = descending
        if self.accept("NULLS"):
            if not self.at("FIRST", "LAST"):
                raise self.unexpected("expecting FIRST or LAST")
            nulls_last = self.advance().text == "LAST"
        return OrderItem(field, descending, nulls_last)

    def count_clause(self, keyword: str, maximum: int | None) -> int | None:
        if not self.accept(keyword):
            return None
        token = self.expect("number")
        if not isinstance(token.value, int) or token.value < 0:
            raise _malformed(self.text, token.pos, f"{keyword} must be a non-negative integer")
        if maximum is not None and token.value > maximum:
            raise SoqlError(
                "NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL {keyword.lower()} allowed is {maximum}"
            )
        return token.value


def _literal_of(token: Token) -> Value | None:
    if token.kind in ("string", "number", "datetime", "date"):
        return Value(token.kind, token.value, token.text)  # type: ignore[arg-type]
    if token.kind == "kw" and token.text in ("TRUE", "FALSE"):
        return Value("boolean", token.text == "TRUE", token.text)
    if token.kind == "kw" and token.text == "NULL":
        return Value("null", None, token.text)
    return None
