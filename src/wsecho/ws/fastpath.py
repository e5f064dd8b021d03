"""
The fast path of the echo: the whole single-frame messages of a read are
echoed by L{wsecho.wire.frames.scan} and written at once, without
Autobahn's frame objects (compressed ones too, with permessage-deflate);
anything else (fragments, a frame over the limit, a protocol error) is
left for Autobahn's parser, which answers it as it would. A read is
echoed a turn's work at a time (see L{wsecho.ws.scheduler}): the rest
waits for the connection's next turn, and a compressed message that
inflates to more than a step is finished in steps (L{FastPath.step}).

Most messages are a single frame, and Autobahn's frame machinery (a header
object, a masker object, a UTF-8 validator object, eight callbacks and
their debug logging) costs a 32-byte echo two thirds of its time.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from wsecho.wire.deflate import DeflateCodec
from wsecho.wire.frames import YIELD, scan
from wsecho.ws import costs
from wsecho.ws.account import Account
from wsecho.ws.flow import FlowControl

# What FastPath.echo returns: bytes read, bytes written, messages echoed,
# what is left for Autobahn (None: nothing), and a failure (close code and
# reason) or None. A plain tuple: the echo's hot path.
Echoed = tuple[int, int, int, bytes | None, tuple[int, str] | None]


class FastPath:
    """
    Bytes from the client in, echoes out, between messages.

    A frame of ours cut across reads is kept until it is whole (on the
    connection's account, bounded by the size limit) and looked at again
    only once it is: a 16 MiB frame dripped in 1 KiB reads costs one pass,
    not sixteen thousand.
    """

    def __init__(
        self,
        write: Callable[[bytes], None],
        flow: FlowControl,
        account: Account,
        limit: int,
        tally: Any = None,
    ) -> None:
        self._put = write
        self._flow = flow
        self._account = account
        # The largest frame taken here; Autobahn answers larger ones.
        self._limit = limit
        # The metrics' EchoTally, or None (not counted).
        self._tally = tally
        # The start of a frame waited for until it is whole, its size, and
        # how many bytes it must have before it is looked at again.
        self._pending: list[bytes] | None = None
        self._pending_size = 0
        self._pending_held = 0
        self._need = 0
        # Bytes still to come of a frame dropped with the connection.
        self._skip = 0
        # permessage-deflate, when the connection negotiated it.
        self._codec: DeflateCodec | None = None
        # Read by the protocol, written here: a frame is waited for (or the
        # rest of one skipped), so a read goes through whole() first; and
        # deflate's counts are to be taken after each read.
        self.waiting = False
        self.deflating = False
        # The last echo stopped for the turn's work (see
        # wsecho.ws.scheduler): the rest waits for the next turn.
        self.yielded = False

    def use_deflate(self, deflate: Any, max_message_size: int) -> None:
        """
        Inflate and compress with the connection's negotiated
        C{PerMessageDeflate}.
        """
        self._codec = DeflateCodec(deflate, max_message_size)
        self.deflating = True

    def whole(self, data: bytes) -> bytes | None:
        """
        C{data} with what was waiting before it; L{None} while a frame of
        ours is not whole yet (or the budget closed the connection for it).
        """
        if self._skip:
            # The rest of a frame whose connection was closed for the budget.
            if len(data) <= self._skip:
                self._skip -= len(data)
                return None
            data, self._skip = data[self._skip :], 0
            self.waiting = False
        pending = self._pending
        if pending is None:
            return data
        pending.append(data)
        self._pending_size += len(data)
        # Each read kept costs a little on top of its bytes.
        self._pending_held += len(data) + costs.READ
        if (
            not self._account.hold(len(data) + costs.READ)
            or self._pending_size < self._need
        ):
            return None
        self._pending = None
        self.waiting = False
        self._account.release(self._pending_held)
        # Joined once, when whole: a bytearray grown read by read would be
        # reallocated and over-allocated on the way.
        return b"".join(pending)

    def echo(self, data: bytes, work: int = 1 << 62) -> Echoed:
        """
        Echo the whole single-frame messages at the start of C{data} and
        write the echoes at once; keep the start of a frame of ours that is
        not whole; say what is left for Autobahn, or (L{yielded}) what is
        left for the next turn, once about C{work} bytes of work are done
        (or a large compressed message is under way: see L{step}).
        """
        began = perf_counter()
        codec = self._codec
        tally = self._tally
        replies, at, need, count = scan(data, self._limit, tally, codec, work)
        self.yielded = need == YIELD
        written = 0
        if replies:
            reply = b"".join(replies)
            written = len(reply)
            self._put(reply)
            if self._flow.paused:
                self._flow.wrote()
            if tally is not None and count:
                tally.latency(perf_counter() - began, count)
        if codec is not None and codec.failure is not None:
            return at, written, count, None, codec.take_failure()
        rest = None
        if at < len(data):
            rest = data[at:] if at else data
            if need > 0:
                self._need = need
                self._pending = [rest]
                self._pending_size = len(rest)
                self.waiting = True
                self._pending_held = len(rest) + costs.READ
                self._account.hold(self._pending_held)
                rest = None
        return at, written, count, rest, None

    @property
    def busy(self) -> bool:
        """
        Whether a compressed message is under way (see L{step}).
        """
        codec = self._codec
        return codec is not None and codec.busy

    def step(self, work: int) -> tuple[int, int, bool, tuple[int, str] | None]:
        """
        Go on with the compressed message under way for about C{work} bytes
        of work, and write its echo once it is done: the work done, the
        bytes written, whether the message was read here (not by Autobahn,
        which counted it), and a failure (close code and reason) or L{None}.
        """
        codec = self._codec
        assert codec is not None
        echo, done = codec.step(work)
        if echo is None:
            return done, 0, False, codec.take_failure()
        self._put(echo)
        finished = codec.finished
        if self._tally is not None and finished is not None:
            self._tally.message(*finished)
        return done, len(echo), finished is not None, None

    def deflate_later(self, payload: bytes, binary: bool) -> None:
        """
        Compress the echo of C{payload} (a message Autobahn inflated) in
        steps: it is under way (L{busy}) until L{step} has written it.
        """
        assert self._codec is not None
        self._codec.deflate_later(payload, binary)

    def deflated(self) -> tuple[int, int, int, int]:
        """
        The payload bytes compressed and inflated since last asked:
        compressed in, plain in, compressed out, plain out.
        """
        assert self._codec is not None
        return self._codec.take_counts()

    def stop(self) -> None:
        """
        Let go of the frame waited for (the rest of it, still to come, is
        skipped) and of the deflate state.
        """
        if self._pending is not None:
            self._skip = max(0, self._need - self._pending_size)
            self._pending = None
        self.waiting = bool(self._skip)
        if self._codec is not None:
            self._codec.stop()
        self._codec = None
        self.deflating = False
