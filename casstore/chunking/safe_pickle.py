"""A pickle interpreter that can never import or call code.

It runs the opcodes of protocols 2-5 that plain data needs and resolves every global through
an allow-list callback to an inert :class:`Global` stub. Calls (REDUCE, NEWOBJ) only reach
those stubs; opcodes that could reach other code (EXT*, INST, OBJ, out-of-band buffers) and
anything not allowed raise :class:`UnsafePickleError`. Malformed streams raise
:class:`InvalidInputError`. Nothing here knows about torch: see :mod:`.torch_pickle`.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from casstore.chunking.base import MAX_WINDOW, ReadAt, describe
from casstore.errors import InvalidInputError, UnsafePickleError

MAX_PICKLE = 64 << 20
"""Largest pickle stream interpreted."""
MAX_OPS = 3 << 19
"""Opcodes interpreted per stream (1.5M, ~25 per tensor: a state dict of 60k tensors): bounds
the work to about 3 s of CPU on a slow core (~2 us per opcode)."""
MAX_ITEMS = 8 << 20
"""Container elements built or copied per stream (a list copied by an allowed call counts its
length again; a bytes/str argument counts a unit per 8 bytes): bounds the object graph's
memory, which the stream length alone does not (a 1 MB stream can copy a big list 100k times)."""
MAX_MARKS = 1 << 12
"""Open MARKs: each one is a fresh stack (8 MB of ``(`` would be 8M lists)."""
MAX_STACK = 1 << 17
"""Items on the stack at once: pickle batches lists and dicts by 1000, so only a bomb (e.g.
200k nested dicts pushed before their SETITEMs) comes near."""
MAX_MEMO = 1 << 21

_REFILL = 1 << 20
_MAX_LONG = 1 << 16  # bytes of a LONG4 / text number


class Global:
    """An allowed global, stood in for by an immutable stub.

    ``call`` (if any) receives the argument tuple of REDUCE/NEWOBJ and returns plain data or
    other stubs; ``info`` carries what the interpreter of the result needs (e.g. a dtype).
    """

    __slots__ = ("call", "info", "qualname")

    def __init__(self, qualname: str, call: Callable[[tuple], Any] | None = None, info=None):
        object.__setattr__(self, "qualname", qualname)
        object.__setattr__(self, "call", call)
        object.__setattr__(self, "info", info)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Global stubs are immutable")

    def __repr__(self) -> str:
        return f"<global {self.qualname}>"


class Stub:
    """Base of the inert objects allowed calls return; BUILD hands them its state."""

    __slots__ = ()

    def build(self, state: Any) -> None:
        """Receive a BUILD state (default: dropped)."""


class Opaque(Stub):
    """The inert result of calling an allowed global whose value casstore does not need."""

    __slots__ = ("args", "qualname", "state")

    def __init__(self, qualname: str, args: tuple):
        self.qualname, self.args, self.state = qualname, args, None

    def build(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualname}(...)>"


Resolve = Callable[[str, str], Global]  # (module, name) -> stub, or raises UnsafePickleError
PersistentLoad = Callable[[Any], Any]


class _Source:
    """Bytes of one pickle stream: an in-memory buffer, or a file refilled through read_at."""

    def __init__(self, data: bytes, read_at: ReadAt | None = None, offset: int = 0, end: int = 0):
        self.buf = data
        self.pos = 0
        self.read_at, self.next_offset, self.end = read_at, offset, end
        self.consumed_before = 0  # bytes dropped from the front of ``buf``

    @property
    def consumed(self) -> int:
        return self.consumed_before + self.pos

    def take(self, n: int) -> bytes:
        if n < 0:
            raise InvalidInputError("negative length in pickle stream")
        if self.pos + n > len(self.buf):
            self._fill(n)
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            self._fill(1)
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\n", self.pos)
            if i >= 0:
                data = self.buf[self.pos : i]
                self.pos = i + 1
                return data
            if len(self.buf) - self.pos > _MAX_LONG:
                raise InvalidInputError("pickle text argument is too long")
            self._fill(len(self.buf) - self.pos + 1)

    def _fill(self, need: int) -> None:
        have = len(self.buf) - self.pos
        rest = self.end - self.next_offset
        want = rest if rest <= MAX_WINDOW else max(need - have, _REFILL)
        if self.consumed + need > MAX_PICKLE:
            raise InvalidInputError(f"pickle stream larger than {MAX_PICKLE} bytes")
        if self.read_at is None or self.next_offset + need - have > self.end:
            raise InvalidInputError("pickle stream is truncated")
        n = min(want, self.end - self.next_offset)
        more = self.read_at(self.next_offset, n)
        if len(more) != n:
            raise InvalidInputError("short read in pickle stream (file changed while reading?)")
        self.next_offset += n
        self.consumed_before += self.pos
        self.buf = self.buf[self.pos :] + bytes(more)
        self.pos = 0


def load_at(
    read_at: ReadAt,
    start: int,
    end: int,
    resolve: Resolve,
    persistent_load: PersistentLoad | None = None,
    filename: str = "",
) -> tuple[Any, int]:
    """Interpret the pickle at file offset ``start`` (not reading past ``end``).

    Returns the object and the number of bytes the pickle spans, so consecutive pickles can be
    read one after another. The stream is read in bounded pieces through ``read_at``.
    """
    source = _Source(b"", read_at, start, end)
    vm = _Machine(source, resolve, persistent_load)
    try:
        return vm.run(), source.consumed
    except InvalidInputError as e:
        raise type(e)(f"{_where(filename)}{e}") from None
    except (
        IndexError,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        struct.error,
        OverflowError,
        RecursionError,
        UnicodeDecodeError,
    ) as e:
        raise InvalidInputError(
            f"{_where(filename)}malformed pickle at byte {source.consumed}: {type(e).__name__}: {e}"
        ) from None


def _where(filename: str) -> str:
    return f"{describe(filename)}: " if filename else ""


def load_bytes(
    data: bytes,
    resolve: Resolve,
    persistent_load: PersistentLoad | None = None,
    start: int = 0,
) -> tuple[Any, int]:
    """:func:`load_at` over an in-memory buffer."""
    view = memoryview(data)
    return load_at(lambda o, n: view[o : o + n], start, len(view), resolve, persistent_load)


class _Machine:
    """The interpreter: a stack, a mark stack and a memo, like pickle.py's Unpickler."""

    def __init__(self, source: _Source, resolve: Resolve, persistent_load: PersistentLoad | None):
        self.src = source
        self.resolve = resolve
        self.persistent_load = persistent_load
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.done = False
        self.result: Any = None
        self.items = 0  # container elements built or copied so far (see MAX_ITEMS)

    def run(self) -> Any:
        src, table = self.src, _TABLE
        ops = 0
        while not self.done:
            ops += 1
            if ops & 0xFFF == 0:
                self._check_bounds(ops)
            if src.pos >= len(src.buf):
                src._fill(1)
            op = src.buf[src.pos]
            src.pos += 1
            handler = table[op]
            if handler is None:
                name = _UNSAFE_OPCODES.get(bytes([op]), f"{bytes([op])!r}")
                raise UnsafePickleError(f"pickle opcode {name} is not allowed")
            handler(self)
        return self.result

    # -- helpers ---------------------------------------------------------------------------
    def _check_bounds(self, ops: int) -> None:
        if ops > MAX_OPS:
            raise InvalidInputError(f"pickle needs more than {MAX_OPS} operations")
        if len(self.stack) > MAX_STACK:
            raise InvalidInputError(f"pickle stack deeper than {MAX_STACK}")
        if len(self.memo) > MAX_MEMO:
            raise InvalidInputError(f"pickle memo larger than {MAX_MEMO} entries")

    def charge(self, n: int) -> None:
        """Count ``n`` container elements built or copied against :data:`MAX_ITEMS`."""
        self.items += n
        if self.items > MAX_ITEMS:
            raise InvalidInputError(
                f"pickle builds more than {MAX_ITEMS} container elements (a pickle bomb?)"
            )

    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop_mark(self) -> list[Any]:
        items = self.stack
        self.stack = self.marks.pop()
        self.charge(len(items))
        return items

    def u(self, fmt: str, n: int) -> Any:
        return struct.unpack(fmt, self.src.take(n))[0]

    def sized(self, n: int) -> bytes:
        if not 0 <= n <= MAX_PICKLE:  # a negative length would move the cursor backwards
            raise InvalidInputError(f"pickle argument of {n} bytes is invalid")
        return self.src.take(n)

    # -- opcodes ---------------------------------------------------------------------------
    def proto(self) -> None:
        version = self.src.byte()
        if not 2 <= version <= 5:
            raise InvalidInputError(f"unsupported pickle protocol {version}")

    def frame(self) -> None:
        self.src.take(8)

    def stop(self) -> None:
        self.result = self.stack.pop()
        self.done = True

    def mark(self) -> None:
        if len(self.marks) >= MAX_MARKS:
            raise InvalidInputError(f"pickle nests more than {MAX_MARKS} MARKs")
        self.marks.append(self.stack)
        self.stack = []

    def int_text(self) -> None:
        text = self.src.line()
        self.push(False if text == b"00" else True if text == b"01" else int(text))

    def long_n(self, width: int) -> None:
        n = self.u("<B" if width == 1 else "<i", width)
        if not 0 <= n <= _MAX_LONG:
            raise InvalidInputError("bad LONG length")
        self.push(int.from_bytes(self.src.take(n), "little", signed=True))

    def string(self, fmt: str, width: int, kind: str) -> None:
        raw = self.sized(self.u(fmt, width))
        if kind == "str":
            self.push(raw.decode("utf-8", "surrogatepass"))
        elif kind == "py2str":  # Python 2 str (torch files written by Python 2)
            self.push(raw.decode("latin-1"))
        elif kind == "bytearray":
            self.push(bytearray(raw))
        else:
            self.push(raw)

    def tuple_n(self, n: int) -> None:
        if n == 0:
            self.push(())
            return
        self.charge(n)
        items = tuple(self.stack[-n:])
        if len(items) != n:
            raise IndexError("stack underflow")
        del self.stack[-n:]
        self.push(items)

    def setitems(self, items: list[Any]) -> None:
        target = self.stack[-1]
        if type(target) not in (dict, OrderedDict):
            raise InvalidInputError(f"SETITEM(S) on {type(target).__name__}")
        if len(items) % 2:
            raise InvalidInputError("odd number of items for SETITEMS")
        self.charge(len(items) // 2)
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def appends(self, items: list[Any]) -> None:
        target = self.stack[-1]
        if type(target) is not list:
            raise InvalidInputError(f"APPEND(S) on {type(target).__name__}")
        self.charge(len(items))
        target.extend(items)

    def additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise InvalidInputError(f"ADDITEMS on {type(target).__name__}")
        target.update(items)

    def put(self, index: int) -> None:
        if not 0 <= index <= MAX_OPS:
            raise InvalidInputError("memo index out of range")
        self.memo[index] = self.stack[-1]

    def get(self, index: int) -> None:
        self.push(self.memo[index])

    def global_text(self) -> None:
        module = self.src.line().decode("utf-8")
        name = self.src.line().decode("utf-8")
        self.push(self._resolve(module, name))

    def stack_global(self) -> None:
        name = self.stack.pop()
        module = self.stack.pop()
        if type(module) is not str or type(name) is not str:
            raise InvalidInputError("STACK_GLOBAL needs two strings")
        self.push(self._resolve(module, name))

    def _resolve(self, module: str, name: str) -> Global:
        if module == "__builtin__":  # Python 2
            module = "builtins"
        stub = self.resolve(module, name)
        if type(stub) is not Global:
            raise UnsafePickleError(f"global {module}.{name} is not allowed")
        return stub

    def reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self.call(self.stack[-1], args)

    def newobj(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self.call(self.stack[-1], args)

    def newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        if kwargs:
            raise UnsafePickleError("NEWOBJ_EX with keyword arguments is not allowed")
        self.stack[-1] = self.call(self.stack[-1], args)

    def call(self, func: Any, args: Any) -> Any:
        """An allowed call; what it copies (its arguments' lengths) counts against MAX_ITEMS."""
        if type(args) is tuple:
            self.charge(1 + sum(_cost(a) for a in args))
        return _call(func, args)

    def build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Stub):
            inst.build(state)
        elif type(inst) is not OrderedDict:  # an OrderedDict's state (torch's _metadata) is dropped
            raise UnsafePickleError(f"BUILD on {type(inst).__name__} is not allowed")

    def binpersid(self) -> None:
        pid = self.stack.pop()
        if self.persistent_load is None:
            raise UnsafePickleError("persistent ids are not allowed in this pickle")
        self.push(self.persistent_load(pid))


_SIZED = (list, tuple, dict, OrderedDict, set, frozenset)


def _cost(arg: Any) -> int:
    if type(arg) in _SIZED:
        return len(arg)
    if type(arg) in (str, bytes, bytearray):
        return len(arg) // 8
    return 0


def _call(func: Any, args: Any) -> Any:
    if type(func) is not Global or func.call is None:
        raise UnsafePickleError(f"call of {describe_object(func)} is not allowed")
    if type(args) is not tuple:
        raise InvalidInputError(f"arguments of {func.qualname} are not a tuple")
    return func.call(args)


def describe_object(obj: Any) -> str:
    """Names an object in a message without repr (which could be huge or recursive)."""
    return repr(obj) if type(obj) is Global else f"a {type(obj).__name__}"


def _op(code: str | int) -> bytes:
    return bytes([code]) if isinstance(code, int) else code.encode("latin-1")


_M = _Machine
_DISPATCH: dict[bytes, Callable[[_Machine], None]] = {
    _op(0x80): _M.proto,
    _op(0x95): _M.frame,
    _op("."): _M.stop,
    _op("("): _M.mark,
    _op("0"): lambda m: m.stack.pop(),
    _op("1"): lambda m: m.pop_mark(),
    _op("2"): lambda m: m.push(m.stack[-1]),
    # numbers and constants
    _op("N"): lambda m: m.push(None),
    _op(0x88): lambda m: m.push(True),
    _op(0x89): lambda m: m.push(False),
    _op("J"): lambda m: m.push(m.u("<i", 4)),
    _op("K"): lambda m: m.push(m.src.byte()),
    _op("M"): lambda m: m.push(m.u("<H", 2)),
    _op("I"): _M.int_text,
    _op(0x8A): lambda m: m.long_n(1),
    _op(0x8B): lambda m: m.long_n(4),
    _op("G"): lambda m: m.push(m.u(">d", 8)),
    _op("F"): lambda m: m.push(float(m.src.line())),
    # strings and bytes
    _op("X"): lambda m: m.string("<I", 4, "str"),
    _op(0x8C): lambda m: m.string("<B", 1, "str"),
    _op(0x8D): lambda m: m.string("<Q", 8, "str"),
    _op("T"): lambda m: m.string("<i", 4, "py2str"),
    _op("U"): lambda m: m.string("<B", 1, "py2str"),
    _op("B"): lambda m: m.string("<I", 4, "bytes"),
    _op("C"): lambda m: m.string("<B", 1, "bytes"),
    _op(0x8E): lambda m: m.string("<Q", 8, "bytes"),
    _op(0x96): lambda m: m.string("<Q", 8, "bytearray"),
    # containers
    _op("]"): lambda m: m.push([]),
    _op("}"): lambda m: m.push({}),
    _op(")"): lambda m: m.push(()),
    _op(0x8F): lambda m: m.push(set()),
    _op("l"): lambda m: m.push(m.pop_mark()),
    _op("t"): lambda m: m.push(tuple(m.pop_mark())),
    _op(0x85): lambda m: m.tuple_n(1),
    _op(0x86): lambda m: m.tuple_n(2),
    _op(0x87): lambda m: m.tuple_n(3),
    _op(0x91): lambda m: m.push(frozenset(m.pop_mark())),
    _op("a"): lambda m: m.appends([m.stack.pop()]),
    _op("e"): lambda m: m.appends(m.pop_mark()),
    _op("s"): lambda m: m.setitems([m.stack.pop(-2), m.stack.pop()]),
    _op("u"): lambda m: m.setitems(m.pop_mark()),
    _op(0x90): _M.additems,
    # memo
    _op("q"): lambda m: m.put(m.src.byte()),
    _op("r"): lambda m: m.put(m.u("<I", 4)),
    _op("p"): lambda m: m.put(int(m.src.line())),
    _op(0x94): lambda m: m.put(len(m.memo)),
    _op("h"): lambda m: m.get(m.src.byte()),
    _op("j"): lambda m: m.get(m.u("<I", 4)),
    _op("g"): lambda m: m.get(int(m.src.line())),
    # globals, calls, persistent ids
    _op("c"): _M.global_text,
    _op(0x93): _M.stack_global,
    _op("R"): _M.reduce,
    _op(0x81): _M.newobj,
    _op(0x92): _M.newobj_ex,
    _op("b"): _M.build,
    _op("Q"): _M.binpersid,
}

_TABLE: list[Callable[[_Machine], None] | None] = [_DISPATCH.get(bytes([i])) for i in range(256)]

_UNSAFE_OPCODES = {
    _op(0x82): "EXT1",
    _op(0x83): "EXT2",
    _op(0x84): "EXT4",
    _op("i"): "INST",
    _op("o"): "OBJ",
    _op("P"): "PERSID",
    _op(0x97): "NEXT_BUFFER",
    _op(0x98): "READONLY_BUFFER",
}
