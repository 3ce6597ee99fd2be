"""Bitsliced AES-256 on Python big integers: many blocks, each with its own key, at once.

Used by the ESP32 flash encryption scheme (:mod:`.flash_encryption`), whose every
32-byte unit has its own key.

A cipher context per 32-byte unit (a C key schedule, ~3 us from Python) is the
floor of the straight approach, and espsecure is already there. Bitslicing
runs AES on all units at once instead: plane i of the state is one Python
int holding state bit i of every unit's block, one bit per unit, so one
big-integer XOR/AND is one logic gate applied to every unit, and the
per-unit keys (the key file XOR an address-dependent tweak) are planes too.
The cost is the number of big-integer operations (an XOR or AND about as
costly as reading its operands; shifts, additions and multiplications five
times that), so the S-boxes and (Inv)MixColumns are generated once as
straight-line XOR/AND lists (checked against the textbook definitions, with
the shortest XOR programs we found for their linear layers) whose
temporaries are reused as soon as they are dead, keeping the working set in
cache; and bits move between bytes and planes with 8x8 bit-matrix
transposes on ints holding one byte position of every unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

_Circuit = Callable[..., tuple[int, ...]]

# The AES S-box circuit of J. Boyar and R. Peralta, "A new combinational logic
# minimization technique with applications to cryptology", SEA 2010 (LNCS 6049),
# IACR ePrint 2009/191: 32 AND and 83 XOR/XNOR gates in three layers. U0 is the
# input's most significant bit, S0 the output's; "#" is XNOR.
_BP_TOP = """
y14 U3 ^ U5   y13 U0 ^ U6   y9 U0 ^ U3    y8 U0 ^ U5    t0 U1 ^ U2    y1 t0 ^ U7
y4 y1 ^ U3    y12 y13 ^ y14 y2 y1 ^ U0    y5 y1 ^ U6    y3 y5 ^ y8    t1 U4 ^ y12
y15 t1 ^ U5   y20 t1 ^ U1   y6 y15 ^ U7   y10 y15 ^ t0  y11 y20 ^ y9  y7 U7 ^ y11
y17 y10 ^ y11 y19 y10 ^ y8  y16 t0 ^ y11  y21 y13 ^ y16 y18 U0 ^ y16
"""
_BP_MIDDLE = """
t2 y12 & y15  t3 y3 & y6    t4 t3 ^ t2    t5 y4 & U7    t6 t5 ^ t2    t7 y13 & y16
t8 y5 & y1    t9 t8 ^ t7    t10 y2 & y7   t11 t10 ^ t7  t12 y9 & y11  t13 y14 & y17
t14 t13 ^ t12 t15 y8 & y10  t16 t15 ^ t12 t17 t4 ^ t14  t18 t6 ^ t16  t19 t9 ^ t14
t20 t11 ^ t16 t21 t17 ^ y20 t22 t18 ^ y19 t23 t19 ^ y21 t24 t20 ^ y18 t25 t21 ^ t22
t26 t21 & t23 t27 t24 ^ t26 t28 t25 & t27 t29 t28 ^ t22 t30 t23 ^ t24 t31 t22 ^ t26
t32 t31 & t30 t33 t32 ^ t24 t34 t23 ^ t33 t35 t27 ^ t33 t36 t24 & t35 t37 t36 ^ t34
t38 t27 ^ t36 t39 t29 & t38 t40 t25 ^ t39 t41 t40 ^ t37 t42 t29 ^ t33 t43 t29 ^ t40
t44 t33 ^ t37 t45 t42 ^ t41 z0 t44 & y15  z1 t37 & y6   z2 t33 & U7   z3 t43 & y16
z4 t40 & y1   z5 t29 & y7   z6 t42 & y11  z7 t45 & y17  z8 t41 & y10  z9 t44 & y12
z10 t37 & y3  z11 t33 & y4  z12 t43 & y13 z13 t40 & y5  z14 t29 & y2  z15 t42 & y9
z16 t45 & y14 z17 t41 & y8
"""
_BP_BOTTOM = """
t46 z15 ^ z16 t47 z10 ^ z11 t48 z5 ^ z13  t49 z9 ^ z10  t50 z2 ^ z12  t51 z2 ^ z5
t52 z7 ^ z8   t53 z0 ^ z3   t54 z6 ^ z7   t55 z16 ^ z17 t56 z12 ^ t48 t57 t50 ^ t53
t58 z4 ^ t46  t59 z3 ^ t54  t60 t46 ^ t57 t61 z14 ^ t57 t62 t52 ^ t58 t63 t49 ^ t58
t64 z4 ^ t59  t65 t61 ^ t62 t66 z1 ^ t63  S0 t59 ^ t63  S6 t56 # t62  S7 t48 # t60
t67 t64 ^ t65 S3 t53 ^ t66  S4 t51 ^ t66  S5 t47 ^ t65  S1 t64 # S3   S2 t55 # t67
"""


# XOR programs (gates ``tK=a^b``, then ``:`` and the output signals) for the
# linear layers of the inverse S-box and for (Inv)MixColumns on one column,
# inputs and outputs LSB first, byte r bit i -> 8r+i: 23, 29, 105 and 98 XORs
# where Paar's greedy and the textbook decompositions take 31, 35, 168 and 108.
# Found for this module offline by seeded searches that may cancel terms
# (Boyar and Peralta's distance heuristic for the S-box layers, a beam search
# over in-place programs for the columns); they are data, each checked
# against its matrix when the circuits are built.
_INV_SBOX_TOP = """
t0=x4^x6 t1=x0^x3 t2=x4^t1 t3=x4^x7 t4=x6^t3 t5=t2^t4 t6=x3^t4 t7=x4^t4 t8=x1^t2 t9=x0^t2 t10=x5^t9
t11=t0^t8 t12=t6^t8 t13=t10^t11 t14=t2^t13 t15=x5^t13 t16=x1^t13 t17=x7^x2 t18=t15^t17 t19=t5^t18
t20=t14^t19 t21=x5^t17 t22=t9^t18
: t21 t2 t5 t18 t12 t8 t6 t20 t14 t19 t10 t1 t11 t22 t16 t3 t15 t0 t4 t13 t7 t9
"""
_INV_SBOX_BOTTOM = """
t0=x12^x15 t1=t0^x16 t2=t1^x13 t3=x6^t2 t4=x8^t3 t5=x2^x0 t6=x5^x3 t7=x4^x3 t8=x10^t5 t9=t8^t6 t10=x16^x17
t11=t9^x11 t12=x15^x17 t13=x7^t7 t14=x14^t11 t15=t7^x0 t16=x1^t15 t17=t12^x9 t18=t6^t4 t19=t4^t5 t20=t13^t3
t21=t14^x13 t22=t17^x11 t23=t10^t11 t24=t16^t18 t25=t23^t20 t26=t21^t24 t27=t2^t22 t28=t27^t26
: t22 t20 t24 t25 t19 t26 t28 t18
"""
_INV_MIX_COLUMNS = """
t0=x21^x5 t1=x13^x29 t2=x22^x6 t3=t0^t1 t4=x14^x30 t5=t2^t3 t6=t3^t4 t7=x15^t5 t8=x23^t5 t9=x3^t7 t10=x1^x17
t11=x10^x26 t12=t10^x9 t13=x25^t12 t14=x2^x18 t15=t6^x31 t16=t8^x31 t17=x19^t11 t18=x28^x20 t19=x27^t9
t20=t9^t14 t21=t20^t17 t22=x8^x16 t23=x16^x24 t24=x12^x4 t25=t7^x7 t26=x9^t22 t27=x7^t15 t28=t21^t15
t29=t19^t15 t30=x24^t25 t31=t17^x11 t32=x11^x18 t33=x26^t26 t34=x6^x30 t35=t26^t13 t36=x17^t23 t37=t23^x0
t38=t12^t30 t39=t36^t27 t40=x4^t16 t41=t30^t22 t42=x20^t27 t43=t40^t18 t44=t42^t24 t45=x29^t3 t46=x30^t5
t47=t32^t33 t48=x18^t11 t49=t38^x0 t50=t11^t13 t51=t3^x5 t52=x5^t1 t53=t1^t18 t54=t53^t24 t55=t18^t28
t56=t24^t28 t57=x0^t27 t58=t33^t14 t59=t14^t13 t60=x31^t25 t61=t57^t22 t62=t28^t16 t63=t58^t16 t64=t47^t29
t65=t62^t27 t66=t35^t16 t67=t37^t16 t68=t27^t25 t69=t31^t13 t70=t51^t56 t71=t64^t68 t72=t29^t50 t73=t43^t69
t74=t69^t68 t75=t44^t72 t76=t13^t39 t77=t22^t67 t78=t67^t68 t79=t63^t39 t80=t39^t49 t81=t56^t73 t82=t45^t81
t83=t82^t75 t84=t71^t49 t85=t46^t70 t86=t85^t83 t87=t52^t55 t88=t55^t75 t89=t48^t80 t90=t80^t66 t91=t34^t54
t92=t59^t89 t93=t65^t84 t94=t72^t93 t95=t74^t84 t96=t50^t79 t97=t60^t91 t98=t16^t97 t99=t68^t98 t100=t25^t99
t101=t54^t83 t102=t6^t86 t103=t91^t102 t104=t5^t103
: t41 t90 t89 t93 t81 t70 t103 t100 t78 t66 t79 t95 t73 t101 t86 t99 t77 t76 t92 t84 t88 t87 t104 t97 t61
t49 t96 t94 t75 t83 t102 t98
"""
_MIX_COLUMNS = """
t0=x15^x23 t1=x23^x31 t2=x27^x3 t3=x31^x7 t4=x1^x9 t5=x2^x26 t6=x22^x14 t7=x21^x29 t8=x12^x4 t9=x4^x20
t10=x0^x24 t11=x3^x19 t12=x19^t0 t13=x14^x30 t14=x9^x25 t15=x18^x10 t16=t11^t3 t17=x29^x13 t18=x13^x5
t19=x20^x28 t20=x5^t8 t21=t19^t8 t22=t8^t16 t23=t16^x11 t24=t23^t5 t25=x8^t10 t26=x30^t18 t27=x6^t18
t28=t18^t7 t29=t7^t9 t30=t9^x28 t31=t30^x11 t32=x28^t3 t33=t31^t12 t34=t12^t2 t35=x11^t15 t36=t32^t2
t37=t2^t1 t38=t37^x26 t39=t38^x10 t40=x10^x17 t41=t34^t15 t42=t40^x25 t43=x26^t15 t44=t22^t1 t45=t42^t5
t46=t43^t4 t47=t5^t14 t48=t15^t14 t49=t14^x17 t50=x17^t4 t51=t50^t10 t52=x25^t4 t53=t4^t25 t54=t25^t1
t55=t10^x16 t56=x16^t1 t57=t1^x7 t58=x7^t27 t59=t58^t26 t60=t53^t55 t61=t51^t3 t62=t52^x24 t63=t59^t0
t64=t57^t6 t65=t35^t0 t66=t26^t6 t67=t39^t0 t68=t6^t17 t69=t17^t20 t70=x24^t3 t71=t3^t13 t72=t55^t0
t73=t49^t0 t74=t0^t13 t75=t13^t28 t76=t75^t27 t77=t69^t21 t78=t28^t20 t79=t20^t29 t80=t21^t36 t81=t27^t68
t82=t65^t67 t83=t48^t45 t84=t62^t56 t85=t71^t63 t86=t70^t54 t87=t56^t86 t88=t29^t77 t89=t68^t76 t90=t74^t64
t91=t47^t46 t92=t60^t73 t93=t36^t44 t94=t44^t33 t95=t73^t86 t96=t86^t72 t97=t67^t24
: t96 t95 t46 t97 t94 t78 t66 t85 t72 t92 t83 t41 t33 t79 t89 t64 t54 t84 t45 t82 t93 t77 t76 t90 t87 t61
t91 t24 t80 t88 t81 t63
"""


def _equations(text: str) -> list[tuple[str, str, str, str]]:
    words = text.split()
    return [(words[i], words[i + 1], words[i + 2], words[i + 3]) for i in range(0, len(words), 4)]


_Program = tuple[list[tuple[int, int]], list[int]]


def _xor_program(text: str, inputs: int, rows: Sequence[int]) -> _Program:
    """Parse an XOR straight-line program and check that it computes the linear map ``rows``.

    ``text`` is gates ``tK=a^b`` (K counting from 0; operands are inputs
    ``xI`` or earlier gates), then ``:`` and the signal of each output. Row j
    of ``rows`` is the mask of inputs output j is the XOR of. Returns the
    gates as pairs of signal indices (inputs first, then gates) and the
    output signal indices.
    """
    gate_text, _, output_text = text.partition(":")
    index = {f"x{i}": i for i in range(inputs)}
    values = [1 << i for i in range(inputs)]
    gates = []
    for k, token in enumerate(gate_text.split()):
        name, _, expr = token.partition("=")
        a, _, b = expr.partition("^")
        if name != f"t{k}" or a not in index or b not in index:
            raise RuntimeError(f"internal error: malformed XOR program gate {token!r}")
        gates.append((index[a], index[b]))
        index[name] = len(values)
        values.append(values[index[a]] ^ values[index[b]])
    outputs = [index[name] for name in output_text.split()]
    if [values[o] for o in outputs] != list(rows):
        raise RuntimeError("internal error: an XOR program does not compute its linear map")
    return gates, outputs


class _Builder:
    """Records XOR/AND gates on wires and compiles them to a Python function on ints.

    Every wire is known as an XOR of "atoms" (the constant 1, the inputs and
    every AND gate's output), kept as a bit mask: an XOR whose result already
    exists as a wire, however it was reached, costs no gate.
    """

    ZERO, ONE = -1, -2

    def __init__(self, inputs: int) -> None:
        self.inputs = inputs
        self.gates: list[tuple[int, int, str, int]] = []
        self.next = inputs
        self.sig: dict[int, int] = {self.ZERO: 0, self.ONE: 1}
        self.sig.update({i: 1 << (i + 1) for i in range(inputs)})
        self.by_sig: dict[int, int] = {v: k for k, v in self.sig.items()}
        self.ands: dict[tuple[int, int], int] = {}
        self.atoms = inputs + 1

    def _new(self, a: int, op: str, b: int, sig: int) -> int:
        w = self.next
        self.next += 1
        self.gates.append((w, a, op, b))
        self.sig[w] = sig
        self.by_sig.setdefault(sig, w)
        return w

    def x(self, a: int, b: int) -> int:
        sig = self.sig[a] ^ self.sig[b]
        if sig in self.by_sig:
            return self.by_sig[sig]
        return self._new(a, "^", b, sig)

    def n(self, a: int) -> int:
        return self.x(a, self.ONE)

    def a(self, a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in self.ands:
            self.ands[key] = self._new(key[0], "&", key[1], 1 << self.atoms)
            self.atoms += 1
        return self.ands[key]

    def program(self, wires: Sequence[int], program: _Program) -> list[int]:
        """Wires for the outputs of an XOR program (see :func:`_xor_program`) on ``wires``."""
        gates, outputs = program
        signals = list(wires)
        for a, b in gates:
            signals.append(self.x(signals[a], signals[b]))
        return [signals[o] for o in outputs]

    def compile(self, outputs: Sequence[int], name: str) -> _Circuit:
        """A function ``name(in0, ..., ONES)`` returning the outputs' values.

        Wires share a few local variables (each reused once its value is dead),
        so intermediate big integers are freed early and memory stays in cache.
        """
        last = {w: i for i, (_, a, _, b) in enumerate(self.gates) for w in (a, b)}
        last.update({w: len(self.gates) for w in outputs})
        names = {self.ZERO: "0", self.ONE: "ONES"} | {i: f"r{i}" for i in range(self.inputs)}
        free: list[str] = []
        lines = []
        count = self.inputs
        for i, (w, a, op, b) in enumerate(self.gates):
            if w not in last:
                continue  # dead wire
            expr = f"{names[a]} {op} {names[b]}"
            for v in {a, b}:
                if last.get(v) == i and v >= 0:
                    free.append(names[v])
            if not free:
                free.append(f"r{count}")
                count += 1
            names[w] = free.pop()
            lines.append(f"{names[w]} = {expr}")
        args = ", ".join(f"r{i}" for i in range(self.inputs))
        body = "\n    ".join(lines)
        src = f"def {name}({args}, ONES):\n    {body}\n    return ({', '.join(names[w] for w in outputs)},)\n"
        scope: dict = {}
        exec(compile(src, f"<{name}>", "exec"), scope)  # generated straight-line gate list
        return scope[name]


def _run(b: _Builder, equations: str, env: dict[str, int]) -> None:
    for dst, p, op, q in _equations(equations):
        if op == "&":
            env[dst] = b.a(env[p], env[q])
        else:
            env[dst] = b.x(env[p], env[q])
            if op == "#":
                env[dst] = b.n(env[dst])


def _aes_inverses() -> list[int]:
    """Multiplicative inverses in the AES field (0 -> 0), from powers of the generator 3."""
    powers = [1]
    for _ in range(254):
        v = powers[-1]
        powers.append(v ^ ((v << 1) ^ (0x11B if v & 0x80 else 0)))  # v * 3
    inverse = [0] * 256
    for e, v in enumerate(powers):
        inverse[v] = powers[-e % 255]
    return inverse


def _affine(v: int) -> int:
    """The S-box's affine map without its 0x63 constant."""
    return (
        v
        ^ ((v << 1 | v >> 7) & 0xFF)
        ^ ((v << 2 | v >> 6) & 0xFF)
        ^ ((v << 3 | v >> 5) & 0xFF)
        ^ ((v << 4 | v >> 4) & 0xFF)
    )


def _linear_matrix(func: Callable[[int], int]) -> list[int]:
    """Rows of the 8x8 GF(2) matrix of a linear byte map: row j = inputs feeding output bit j."""
    cols = [func(1 << i) for i in range(8)]
    return [sum(1 << i for i in range(8) if cols[i] >> j & 1) for j in range(8)]


def _compose(forms: Sequence[int], rows: Sequence[int]) -> list[int]:
    """Forms (bit masks over some signals) of XORs of ``forms`` selected by ``rows``."""
    out = []
    for row in rows:
        acc = 0
        for i, form in enumerate(forms):
            if row >> i & 1:
                acc ^= form
        out.append(acc)
    return out


def _build_sboxes() -> tuple[_Circuit, _Circuit]:
    """The AES S-box and its inverse as gate circuits on bit-planes (inputs, outputs LSB first).

    The S-box is Boyar-Peralta's circuit as published (115 gates, each XNOR
    an XOR and a NOT: 119 big-integer operations). The inverse S-box is
    S^-1(y) = inv(A^-1(y ^ 0x63)) with inv(u) = A^-1(S(u) ^ 0x63): Boyar and
    Peralta's nonlinear middle layer with both linear layers recomposed
    through A^-1 and computed by the XOR programs above (115 operations; it
    takes its input XOR 0x63). Both are checked on all 256 inputs.
    """
    inverse_rows = _linear_matrix({_affine(v): v for v in range(256)}.__getitem__)

    # Linear forms of the top layer's outputs over U (mask bit i = U_i) and of
    # the S-box outputs over the middle layer's z0..z17 (constants in bit 0).
    probe = _Builder(8)
    env = {f"U{i}": i for i in range(8)}
    _run(probe, _BP_TOP, env)
    # The middle layer reads the y signals and U7 (not the top layer's t0, t1).
    top_names = sorted({w for _, p, _, q in _equations(_BP_MIDDLE) for w in (p, q) if w[0] in "yU"})
    top_forms = [probe.sig[env[k]] >> 1 for k in top_names]
    probe = _Builder(18)
    env = {f"z{i}": i for i in range(18)}
    _run(probe, _BP_BOTTOM, env)
    out_sigs = [probe.sig[env[f"S{7 - i}"]] for i in range(8)]  # LSB first

    # Forward S-box: the three layers as published.
    fwd = _Builder(8)
    env = {f"U{i}": 7 - i for i in range(8)}
    for text in (_BP_TOP, _BP_MIDDLE, _BP_BOTTOM):
        _run(fwd, text, env)
    sbox = fwd.compile([env[f"S{7 - i}"] for i in range(8)], "sbox")

    # Inverse S-box, taking y' = y ^ 0x63 (the cipher folds the constant into
    # the round keys, once for all blocks): U = A^-1(y') bit i, BP's U_j being
    # bit 7 - j; top forms over y' then come from composing.
    inv = _Builder(8)
    u_over_y = [inverse_rows[7 - j] for j in range(8)]  # BP's U_j as a mask over y'
    top = _xor_program(_INV_SBOX_TOP, 8, _compose(u_over_y, top_forms))
    env = dict(zip(top_names, inv.program(range(8), top), strict=True))
    _run(inv, _BP_MIDDLE, env)
    # inv(u) bit i = XOR over A^-1 row i of (S bit j ^ 0x63 bit j); the constants cancel.
    consts = [(s & 1) ^ (0x63 >> j & 1) for j, s in enumerate(out_sigs)]
    if any(consts):
        raise RuntimeError("internal error: Boyar-Peralta output constants are not 0x63")
    bottom = _xor_program(_INV_SBOX_BOTTOM, 18, _compose([s >> 1 for s in out_sigs], inverse_rows))
    inv_sbox = inv.compile(inv.program([env[f"z{i}"] for i in range(18)], bottom), "inv_sbox")

    # Check both against the AES S-box computed the textbook way, on all 256 inputs at once.
    ones = (1 << 256) - 1
    lanes = [sum(1 << k for k in range(256) if k >> i & 1) for i in range(8)]
    table = [_affine(v) ^ 0x63 for v in _aes_inverses()]
    for func, expect in ((sbox, table), (inv_sbox, [table.index(v ^ 0x63) for v in range(256)])):
        out = func(*lanes, ones)
        got = [sum((out[i] >> k & 1) << i for i in range(8)) for k in range(256)]
        if got != expect:
            raise RuntimeError("internal error: generated AES S-box circuit is wrong")
    return sbox, inv_sbox


def _gf_mul(a: int, b: int) -> int:
    """Product in the AES field GF(2^8) mod x^8 + x^4 + x^3 + x + 1."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        a = (a << 1) ^ (0x11B if a & 0x80 else 0)
        b >>= 1
    return product


def _mix_matrix(coefficients: Sequence[int]) -> list[int]:
    """Rows of a MixColumns-style circulant matrix over one column's 32 bits (byte r bit i -> 8r+i).

    Output byte r is the sum of coefficients[(c - r) % 4] * byte c.
    """
    rows = []
    for r in range(4):
        for i in range(8):
            row = 0
            for c in range(4):
                coefficient = coefficients[(c - r) % 4]
                row |= sum(1 << (8 * c + j) for j in range(8) if _gf_mul(coefficient, 1 << j) >> i & 1)
            rows.append(row)
    return rows


def _build_mix_columns() -> tuple[_Circuit, _Circuit]:
    """Round key addition fused with MixColumns or InvMixColumns, on one column.

    Inputs are the column's 32 state planes (byte r, bit i -> 8r+i) and then
    the 32 round key planes. ``mix_columns_ark`` is MixColumns(s) ^ k (the
    order of an encryption round), ``inv_mix_columns_ark`` InvMixColumns(s ^ k)
    (a decryption round).
    """
    mix = _xor_program(_MIX_COLUMNS, 32, _mix_matrix((2, 3, 1, 1)))
    inv_mix = _xor_program(_INV_MIX_COLUMNS, 32, _mix_matrix((14, 11, 13, 9)))
    b = _Builder(64)
    mix_ark = b.compile([b.x(w, 32 + i) for i, w in enumerate(b.program(range(32), mix))], "mix_columns_ark")
    b = _Builder(64)
    inv_mix_ark = b.compile(b.program([b.x(i, 32 + i) for i in range(32)], inv_mix), "inv_mix_columns_ark")
    return mix_ark, inv_mix_ark


# --- transposition between bytes and bit-planes ------------------------------------------------
#
# A "column" holds one byte per unit (byte p of every unit's block, or bits of
# every unit's index). With n lanes and m = n / 8, lane 8g + i of a plane is
# unit i * m + g: the column's eight contiguous slices of m bytes, as ints,
# are then the rows of an 8x8 bit matrix per byte g, whose transpose is the
# column's eight planes. Contiguous slices are plain copies, and the three
# swap stages run on these small ints rather than on the whole buffer (a
# shift costs about five XORs on big ints).

_SWAP_MASKS: dict[int, tuple[int, int, int]] = {}


def _bit_transpose(rows: Sequence[int], nbytes: int) -> list[int]:
    """Swap ints and bit positions: bit b of byte g of rows[i] <-> bit i of byte g of result[b].

    Its own inverse. Three delta-swap stages, each exchanging the row index's
    bit j with the bit position's bit j.
    """
    masks = _SWAP_MASKS.get(nbytes)
    if masks is None:
        masks = tuple(int.from_bytes(bytes([m]) * nbytes, "little") for m in (0x55, 0x33, 0x0F))
        if len(_SWAP_MASKS) > 4:
            _SWAP_MASKS.clear()
        _SWAP_MASKS[nbytes] = masks
    r = list(rows)
    for s, mask in zip((1, 2, 4), masks, strict=True):
        for i in range(8):
            if not i & s:
                t = ((r[i] >> s) ^ r[i + s]) & mask
                r[i + s] ^= t
                r[i] ^= t << s
    return r


def column_planes(column: bytes, n: int) -> list[int]:
    """The eight bit-planes (bit b -> plane b) of a column of at most n bytes, zero-padded to n lanes."""
    if len(column) < n:
        column += bytes(n - len(column))
    m = n // 8
    return _bit_transpose([int.from_bytes(column[i * m : i * m + m], "little") for i in range(8)], m)


def _planes_column(planes: Sequence[int], n: int) -> bytes:
    """Inverse of :func:`column_planes`: the n-byte column of eight planes."""
    m = n // 8
    return b"".join(row.to_bytes(m, "little") for row in _bit_transpose(planes, m))


def to_planes(data: bytes, start: int, count: int, n: int, first: int) -> list[int]:
    """Bit-planes of the 16-byte blocks at ``first`` (0 or 16) of ``count`` 32-byte units from ``start``.

    n is a multiple of 8, at least ``count`` (extra lanes are zero). Plane
    8p + b holds bit b of state byte p, which is block byte 15 - p (the
    hardware reverses each block).
    """
    end = start + 32 * count
    planes = []
    for p in range(16):
        planes += column_planes(data[start + first + 15 - p : end : 32], n)
    return planes


def from_planes(planes: Sequence[int], n: int, out: bytearray, first: int, count: int) -> None:
    """Inverse of :func:`to_planes`: write the blocks of ``count`` units to ``out[first::32]``."""
    for p in range(16):
        column = _planes_column(planes[8 * p : 8 * p + 8], n)
        out[first + 15 - p : first + 32 * count : 32] = column if count == n else column[:count]


def index_column(start: int, shift: int, n: int) -> bytes:
    """Column whose byte k is bits ``shift``..``shift`` + 7 of the unit index ``start + k``, for k < n."""
    if shift == 0:
        phase = start & 0xFF
        return (_BYTE_VALUES * (n // 256 + 2))[phase : phase + n]
    run = 1 << shift
    head = run - (start & (run - 1))  # units left in the first run of equal values
    v = start >> shift
    runs = [bytes([v & 0xFF]) * min(head, n)]
    done = head
    while done < n:
        v += 1
        runs.append(bytes([v & 0xFF]) * min(run, n - done))
        done += run
    return b"".join(runs)


_BYTE_VALUES = bytes(range(256))


# --- bitsliced AES-256 -----------------------------------------------------------------------

_CIRCUITS: tuple[_Circuit, _Circuit, _Circuit, _Circuit] | None = None
_RCON = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40)
# State byte p is row p % 4, column p // 4. Source byte of each destination after (Inv)ShiftRows.
_SHIFT = [4 * ((p // 4 + p % 4) % 4) + p % 4 for p in range(16)]
_INV_SHIFT = [4 * ((p // 4 - p % 4) % 4) + p % 4 for p in range(16)]


def _circuits() -> tuple[_Circuit, _Circuit, _Circuit, _Circuit]:
    """S-box, inverse S-box, MixColumns and InvMixColumns with the round key, generated on first use."""
    global _CIRCUITS
    if _CIRCUITS is None:
        _CIRCUITS = (*_build_sboxes(), *_build_mix_columns())
    return _CIRCUITS


def _round_keys(key: list[int], ones: int, backwards: bool) -> Iterator[list[int]]:
    """The 15 round keys (128 planes each) of AES-256 keys given as 256 planes (byte j, bit b -> 8j+b).

    Yields them in cipher order, or last first for the inverse cipher. Only
    eight key schedule words and the SubWord results are kept, not all 60
    words: running the schedule backwards needs XORs only, and tens of
    megabytes of round keys cost more in fresh memory than they save.
    """
    sbox = _circuits()[0]
    words = [key[32 * i : 32 * i + 32] for i in range(8)]  # w[i - 8 .. i - 1]
    subs: dict[int, list[int]] = {}
    if not backwards:
        yield words[0] + words[1] + words[2] + words[3]
        yield words[4] + words[5] + words[6] + words[7]
    for i in range(8, 60):
        temp = words[-1]
        if i % 4 == 0:
            if i % 8 == 0:
                temp = temp[8:] + temp[:8]
            temp = [bit for k in range(4) for bit in sbox(*temp[8 * k : 8 * k + 8], ones)]
            if i % 8 == 0:
                rcon = _RCON[i // 8 - 1]
                temp = [p ^ ones if rcon >> b & 1 else p for b, p in enumerate(temp[:8])] + temp[8:]
            subs[i] = temp
        words = [*words[1:], [p ^ q for p, q in zip(words[0], temp, strict=True)]]
        if not backwards and i % 4 == 3:
            yield words[4] + words[5] + words[6] + words[7]
    if backwards:
        # words = w[52..59]; w[i - 8] = w[i] ^ (SubWord result or w[i - 1]).
        yield words[4] + words[5] + words[6] + words[7]
        yield words[0] + words[1] + words[2] + words[3]
        for i in range(59, 7, -1):
            temp = subs[i] if i % 4 == 0 else words[-2]
            words = [[p ^ q for p, q in zip(words[-1], temp, strict=True)], *words[:-1]]
            if i % 4 == 0:
                yield words[0] + words[1] + words[2] + words[3]


def aes_planes(states: list[list[int]], key: list[int], ones: int, decrypt: bool) -> list[list[int]]:
    """AES-256 encryption (or the inverse cipher) on bit-planes, every lane with its own key.

    ``states`` share the keys (given as 256 planes) and go through each round
    together, so every round key is made once and dropped after use.
    """
    sbox, inv_sbox, mix_ark, inv_mix_ark = _circuits()
    keys = _round_keys(key, ones, backwards=decrypt)
    if decrypt:
        # The inverse S-box takes its input XOR 0x63: add it to every round key
        # an inverse S-box follows (InvMixColumns keeps a constant column of
        # equal bytes as it is), so it is paid once per round key, not per block.
        keys = (
            [p ^ ones if 0x63 >> i % 8 & 1 else p for i, p in enumerate(k)] if r < 14 else k for r, k in enumerate(keys)
        )
    k = next(keys)
    states = [[p ^ q for p, q in zip(s, k, strict=True)] for s in states]
    for r in range(1, 15):
        k = next(keys)
        out = []
        for s in states:
            if decrypt:
                s = [bit for p in _INV_SHIFT for bit in inv_sbox(*s[8 * p : 8 * p + 8], ones)]
                if r == 14:
                    s = [p ^ q for p, q in zip(s, k, strict=True)]
                else:
                    s = [bit for c in range(0, 128, 32) for bit in inv_mix_ark(*s[c : c + 32], *k[c : c + 32], ones)]
            else:
                s = [bit for p in _SHIFT for bit in sbox(*s[8 * p : 8 * p + 8], ones)]
                if r == 14:
                    s = [p ^ q for p, q in zip(s, k, strict=True)]
                else:
                    s = [bit for c in range(0, 128, 32) for bit in mix_ark(*s[c : c + 32], *k[c : c + 32], ones)]
            out.append(s)
        states = out
    return states
