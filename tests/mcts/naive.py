"""Plain-Python references of the Numba kernels in ``workbench.mcts._random``,
``workbench.mcts._kernels`` and the environments of ``workbench.mcts.tasks``.

Written for clarity: the tree is a list of dicts, statistics are recomputed from scratch
by walking the tree (no incremental sums), and integers are Python integers masked to 64
bits. They consume random numbers in the same order as the kernels, so a search run both
ways must make the same choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from workbench.mcts import types as T

M64 = (1 << 64) - 1


# --- random numbers ---------------------------------------------------------------------
ZR = 3.442619855899
_V = 9.91256303526217e-3
ZX = [_V / math.exp(-0.5 * ZR * ZR), ZR]
for _ in range(126):
    ZX.append(math.sqrt(-2.0 * math.log(_V / ZX[-1] + math.exp(-0.5 * ZX[-1] ** 2))))
ZX.append(0.0)


class Rng:
    """xoshiro256** seeded by SplitMix64."""

    def __init__(self, seed: int) -> None:
        z = seed & 0x7FFFFFFFFFFFFFFF
        self.s = []
        for _ in range(4):
            z = (z + 0x9E3779B97F4A7C15) & M64
            x = z
            x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
            x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(x ^ (x >> 31))

    @staticmethod
    def _rotl(x: int, k: int) -> int:
        return ((x << k) | (x >> (64 - k))) & M64

    def next64(self) -> int:
        s0, s1, s2, s3 = self.s
        result = (self._rotl((s1 * 5) & M64, 7) * 9) & M64
        t = (s1 << 17) & M64
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = self._rotl(s3, 45)
        self.s = [s0, s1, s2, s3]
        return result

    def uniform(self) -> float:
        return (self.next64() >> 11) / 9007199254740992.0

    def integers(self, n: int) -> int:
        return min(int(self.uniform() * n), n - 1)

    def normal(self) -> float:
        while True:
            bits = self.next64()
            i = bits & 127
            u = 2.0 * ((bits >> 11) / 9007199254740992.0) - 1.0
            z = u * ZX[i]
            if abs(z) < ZX[i + 1]:
                return z
            if i == 0:
                while True:
                    a = -math.log(1.0 - self.uniform()) / ZR
                    b = -math.log(1.0 - self.uniform())
                    if 2.0 * b > a * a:
                        return ZR + a if u > 0 else -(ZR + a)
            f0, f1 = math.exp(-0.5 * ZX[i] ** 2), math.exp(-0.5 * ZX[i + 1] ** 2)
            if f1 + self.uniform() * (f0 - f1) < math.exp(-0.5 * z * z):
                return z

    def gamma(self, shape: float) -> float:
        boost = 1.0
        if shape < 1.0:
            boost = (1.0 - self.uniform()) ** (1.0 / shape)
            shape += 1.0
        d = shape - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        while True:
            x = self.normal()
            v = 1.0 + c * x
            if v <= 0.0:
                continue
            v = v**3
            u = 1.0 - self.uniform()
            if u < 1.0 - 0.0331 * x**4 or math.log(u) < 0.5 * x * x + d * (1 - v + math.log(v)):
                return d * v * boost

    def beta(self, a: float, b: float) -> float:
        if a > 1.0 and b > 1.0:  # Cheng (1978), algorithm BB
            a0, b0 = min(a, b), max(a, b)
            alpha = a0 + b0
            beta = math.sqrt((alpha - 2.0) / (2.0 * a0 * b0 - alpha))
            gamma = a0 + 1.0 / beta
            while True:
                u1, u2 = self.uniform(), self.uniform()
                if not 0.0 < u1 < 1.0:
                    continue
                v = beta * math.log(u1 / (1.0 - u1))
                w = a0 * math.exp(v) if v < 700.0 else math.inf
                z = u1 * u1 * u2
                r = gamma * v - math.log(4.0)
                s = a0 + r - w
                if s + 1.0 + math.log(5.0) >= 5.0 * z:
                    break
                t = math.log(z) if z > 0 else -math.inf
                if s > t or r + alpha * math.log(alpha / (b0 + w)) >= t:
                    break
            if math.isinf(w):
                return 1.0 if a0 == a else 0.0
            return w / (b0 + w) if a0 == a else b0 / (b0 + w)
        x = self.gamma(a)
        y = self.gamma(b)
        return a / (a + b) if x + y <= 0 else x / (x + y)


# --- score models -----------------------------------------------------------------------
def posterior_sample(n: float, s: float, q: float, p: list[float], rng: Rng) -> float:
    if int(p[T.P_DIST]) == T.DIST_BETA:
        a = p[T.P_PRIOR_A] + s
        b = p[T.P_PRIOR_B] + n - s
        return rng.beta(max(a, 1e-12), max(b, 1e-12))
    m0, k0, nu0, t0 = p[T.P_PRIOR_M], p[T.P_PRIOR_KAPPA], p[T.P_PRIOR_NU], p[T.P_PRIOR_TAU2]
    if n > 0:
        ave = s / n
        ss = max(q - n * ave * ave, 0.0)
        kn, nun = k0 + n, nu0 + n
        mn = (k0 * m0 + s) / kn
        tn = (nu0 * t0 + ss + n * k0 * (m0 - ave) ** 2 / kn) / nun
    else:
        kn, nun, mn, tn = k0, nu0, m0, t0
    sigma2 = 0.5 * nun * tn / rng.gamma(0.5 * nun)
    return mn + math.sqrt(sigma2 / kn) * rng.normal()


def ucb_score(n: float, s: float, parent_n: float, c: float) -> float:
    if n <= 0:
        return math.inf
    return s / n + c * math.sqrt(math.log(max(parent_n, 1.0)) / n)


# --- the tree ---------------------------------------------------------------------------
@dataclass
class Node:
    parent: int
    depth: int
    action: int
    score: float
    children: list[int] = field(default_factory=list)  # creation order
    pending: int = 0  # pending trials expanding this node directly
    env_state: int = 0
    terminal_visits: list[float] = field(default_factory=list)  # jitted path revisits
    pool_state: int = 1  # 1: in the parent's leaf pool, 2: leaving it, 0: in the parent's heap
    pool: list[int] = field(default_factory=list)  # pooled children (kernel's block order)
    heap: list[int] = field(default_factory=list)  # max-heap of the other children on .key
    key: float = 0.0
    dirty: list[int] = field(default_factory=list)  # children to refresh, newest first
    in_dirty: bool = False
    margin: float = 0.0  # largest key - location of any heap child so far
    exponent: float = 0.0  # smallest envelope exponent b - 1 of any heap child so far
    mark: int = 0


class NaiveTree:
    def __init__(self, n_actions: int, env_state: int = 0) -> None:
        self.n_actions = n_actions
        self.nodes = [Node(-1, 0, -1, 0.0, env_state=env_state, pool_state=0)]
        self.sweep = 0
        self.tail_table: dict[int, tuple[float, float]] = {}

    def unpool_path(self, i: int) -> None:
        """``i`` and its ancestors (not the root) leave their parents' leaf pools (lazily:
        the parent moves them at its next refresh) and are flagged for a key refresh."""
        while i > 0:
            nd = self.nodes[i]
            if nd.pool_state == 1:
                nd.pool_state = 2
            if not nd.in_dirty:
                nd.in_dirty = True
                self.nodes[nd.parent].dirty.insert(0, i)
            i = nd.parent

    # statistics recomputed by walking subtrees
    def subtree(self, i: int) -> list[int]:
        out, stack = [], [i]
        while stack:
            j = stack.pop()
            out.append(j)
            stack.extend(self.nodes[j].children)
        return out

    def subtree_scores(self, i: int) -> list[float]:
        """Every score observed in the subtree (own score included; root has none)."""
        out = []
        for j in self.subtree(i):
            if j != 0:
                out.append(self.nodes[j].score)
            out.extend(self.nodes[j].terminal_visits)
        return out

    def pending_in(self, i: int) -> int:
        return sum(self.nodes[j].pending for j in self.subtree(i))

    def stats(self, i: int, vl: float) -> tuple[float, float, float]:
        xs = self.subtree_scores(i)
        pend = self.pending_in(i)
        return (
            len(xs) + pend,
            sum(xs) + vl * pend,
            sum(x * x for x in xs) + vl * vl * pend,
        )

    def add(self, parent: int, action: int, score: float) -> int:
        node = Node(parent, self.nodes[parent].depth + 1, action, score)
        self.nodes.append(node)
        self.nodes[parent].children.append(len(self.nodes) - 1)
        self.nodes[parent].pool.append(len(self.nodes) - 1)
        return len(self.nodes) - 1


def _kernel_order(children: list[int]) -> list[int]:
    """Kernels keep children newest first."""
    return list(reversed(children))


def best_child(tree: NaiveTree, p: list[float], rng: Rng, node: int, algo: int, max_depth: int):
    vl = p[T.P_VIRTUAL]
    flip = p[T.P_TWO_PLAYER] > 0 and tree.nodes[node].depth % 2 == 1
    parent_n = tree.stats(node, 0.0)[0]  # pending trials included
    best, best_val = -1, -math.inf
    for c in _kernel_order(tree.nodes[node].children):
        if tree.nodes[c].depth >= max_depth:
            continue
        n, s, q = tree.stats(c, vl)
        if flip:
            q = n - 2 * s + q
            s = n - s
        if algo == T.ALGO_UCT:
            val = ucb_score(n, s, parent_n, p[T.P_C])
        else:
            val = posterior_sample(n, s, q, p, rng)
        if val > best_val or best < 0:
            best, best_val = c, val
    return best


def t2_quantile(p: float) -> float:
    return (2.0 * p - 1.0) / math.sqrt(2.0 * p * (1.0 - p))


def leaf_location_scale(x: float, p: list[float]) -> tuple[float, float]:
    m0, k0, t0 = p[T.P_PRIOR_M], p[T.P_PRIOR_KAPPA], p[T.P_PRIOR_TAU2]
    kn = k0 + 1
    tn = (t0 + k0 * (m0 - x) ** 2 / kn) / 2
    return (k0 * m0 + x) / kn, math.sqrt(tn / kn)


TAIL = 1.0 / 64.0
LOG_TAIL = math.log(TAIL)


def t_location_scale(n: float, s: float, q: float, p: list[float]) -> tuple[float, float, float]:
    m0, k0, nu0, t0 = p[T.P_PRIOR_M], p[T.P_PRIOR_KAPPA], p[T.P_PRIOR_NU], p[T.P_PRIOR_TAU2]
    if n > 0:
        ave = s / n
        ss = max(q - n * ave * ave, 0.0)
        kn, nun = k0 + n, nu0 + n
        mn = (k0 * m0 + s) / kn
        tn = (nu0 * t0 + ss + n * k0 * (m0 - ave) ** 2 / kn) / nun
    else:
        kn, nun, mn, tn = k0, nu0, m0, t0
    return mn, math.sqrt(tn / kn), nun


def log_envelope_mass(nu: float, c: float) -> float:
    log_k = math.lgamma(0.5 * (nu + 1)) - math.lgamma(0.5 * nu) - 0.5 * math.log(nu * math.pi)
    c2 = c * c
    return (
        log_k
        - 0.5 * (nu + 1) * math.log1p(c2 / nu)
        + math.log(c)
        + math.log(nu + c2)
        - math.log(nu)
        - math.log(c2 - 1)
    )


def tail_quantile(nu: float) -> tuple[float, float]:
    lo, hi = 1.0, 2.0
    while log_envelope_mass(nu, hi) > LOG_TAIL:
        lo, hi = hi, 2 * hi
    c = hi
    for _ in range(200):
        g = log_envelope_mass(nu, c) - LOG_TAIL
        if g > 0:
            lo = c
        else:
            hi = c
            if g > -1e-10:
                break
        dg = -(nu - 1) * c / (nu + c * c) + 1 / c - 2 * c / (c * c - 1)
        nxt = c - g / dg
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if hi - lo <= 1e-13 * hi:
            break
        c = nxt
    return hi, math.exp(log_envelope_mass(nu, hi) - LOG_TAIL)


def _own_stats(tree: NaiveTree, i: int) -> tuple[float, float, float]:
    xs = tree.subtree_scores(i)
    return len(xs), sum(xs), sum(x * x for x in xs)


def _tail_entry(tree: NaiveTree, p: list[float], n: int) -> tuple[float, float]:
    if n not in tree.tail_table:
        tree.tail_table[n] = tail_quantile(p[T.P_PRIOR_NU] + n)
    return tree.tail_table[n]


def heap_fix(tree: NaiveTree, heap: list[int], i: int) -> None:
    """The kernel's sift up, then down, of index ``i``."""
    child = heap[i]
    key = tree.nodes[child].key
    while i > 0 and tree.nodes[heap[(i - 1) // 2]].key < key:
        heap[i] = heap[(i - 1) // 2]
        i = (i - 1) // 2
    while 2 * i + 1 < len(heap):
        big = 2 * i + 1
        if big + 1 < len(heap) and tree.nodes[heap[big + 1]].key > tree.nodes[heap[big]].key:
            big += 1
        if tree.nodes[heap[big]].key <= key:
            break
        heap[i] = heap[big]
        i = big
    heap[i] = child


def refresh(tree: NaiveTree, p: list[float], node: int) -> None:
    nd = tree.nodes[node]
    for c in nd.dirty:
        kid = tree.nodes[c]
        kid.in_dirty = False
        if kid.pool_state == 2:
            k = nd.pool.index(c)
            nd.pool[k], nd.pool[-1] = nd.pool[-1], nd.pool[k]
            nd.pool.pop()
            kid.pool_state = 0
            nd.heap.append(c)
        n, s, q = _own_stats(tree, c)
        m, sd, nu = t_location_scale(n, s, q, p)
        cq = _tail_entry(tree, p, n)[0]
        kid.key = m + sd * cq
        nd.margin = max(nd.margin, sd * cq)
        e = cq * cq * (nu + 1) / (nu + cq * cq) - 1
        if nd.exponent == 0.0 or e < nd.exponent:
            nd.exponent = e
        heap_fix(tree, nd.heap, nd.heap.index(c))
    nd.dirty = []


def tail_draw(
    tree: NaiveTree, p: list[float], rng: Rng, child: int, best_val: float, thin: float
) -> float:
    n, s, q = _own_stats(tree, child)
    m, sd, nu = t_location_scale(n, s, q, p)
    c, r = _tail_entry(tree, p, n)
    b = c * c * (nu + 1) / (nu + c * c)
    z = (best_val - m) / sd
    lo, rho = c, r * thin
    if z > c:
        lo, rho = z, r * thin * math.exp((b - 1.0) * math.log(c / z))
    if rng.uniform() >= rho:
        return -math.inf
    y = lo * (1.0 - rng.uniform()) ** (-1.0 / (b - 1.0))
    log_acc = 0.5 * (nu + 1) * (math.log1p(c * c / nu) - math.log1p(y * y / nu)) + b * math.log(
        y / c
    )
    if rng.uniform() >= math.exp(log_acc):
        return -math.inf
    return m + sd * y


def best_child_pooled(tree: NaiveTree, p: list[float], rng: Rng, node: int, max_depth: int):
    """The kernel's exact sampler written out (see ``_best_child_pooled``): the leaf pool by
    decreasing quantiles, the heap by key, then the tail step."""
    nd = tree.nodes[node]
    if nd.depth + 1 >= max_depth:
        return -1
    refresh(tree, p, node)
    best, best_val = -1, -math.inf
    tree.sweep += 1
    sweep = tree.sweep
    heap, pool = nd.heap, nd.pool
    exact_keys = tree.pending_in(node) == nd.pending
    count = len(pool)

    def offer(child: int, val: float) -> None:
        nonlocal best, best_val
        if val > best_val or best < 0:
            best, best_val = child, val

    def pick(j: int) -> int:
        r = j + rng.integers(count - j)
        pool[j], pool[r] = pool[r], pool[j]
        return pool[j]

    v_used, j, done = 0.0, 0, False
    if count > 16:
        (m_a, s_a), (m_b, s_b) = leaf_location_scale(0.0, p), leaf_location_scale(1.0, p)
        m_max, s_max = max(m_a, m_b), max(s_a, s_b)
        while j < count:
            v = 1.0 - (1.0 - v_used) * (1.0 - rng.uniform()) ** (1.0 / (count - j))
            v = min(max(v, 1e-300), 1.0 - 1e-16)
            if v >= 0.5:
                found = pick(j)
                m, s = leaf_location_scale(tree.nodes[found].score, p)
                offer(found, m + s * t2_quantile(1.0 - v))
                v_used, j = v, j + 1
                break
            tq = t2_quantile(1.0 - v)
            if best >= 0 and m_max + s_max * tq <= best_val:
                done = True
                break
            found = pick(j)
            m, s = leaf_location_scale(tree.nodes[found].score, p)
            offer(found, m + s * tq)
            v_used, j = v, j + 1
    if not done:
        for c in pool[j:]:
            v = min(max(v_used + (1.0 - v_used) * rng.uniform(), 1e-300), 1.0 - 1e-16)
            m, s = leaf_location_scale(tree.nodes[c].score, p)
            offer(c, m + s * t2_quantile(1.0 - v))
    if not exact_keys:
        for c in heap:
            offer(c, posterior_sample(*tree.stats(c, p[T.P_VIRTUAL]), p, rng))
        return best
    stack = [0] if heap else []  # preorder, left subtree first
    while stack:
        i = stack.pop()
        if i >= len(heap):
            continue
        c = heap[i]
        if best >= 0 and tree.nodes[c].key < best_val:
            continue
        tree.nodes[c].mark = sweep
        offer(c, posterior_sample(*_own_stats(tree, c), p, rng))
        stack += [2 * i + 2, 2 * i + 1]
    if not heap:
        return best
    rate, top = TAIL, tree.nodes[heap[0]].key
    if best_val > top:
        rate = TAIL * math.exp(-nd.exponent * math.log1p((best_val - top) / nd.margin))
    log1m = math.log1p(-rate)
    i = -1
    while log1m < 0.0:
        skip = math.log(1.0 - rng.uniform()) / log1m
        if skip >= len(heap) - 1 - i:
            break
        i += 1 + int(skip)
        if tree.nodes[heap[i]].mark != sweep:
            val = tail_draw(tree, p, rng, heap[i], best_val, TAIL / rate)
            if val > best_val:
                best, best_val = heap[i], val
    return best


def choose_action(tree: NaiveTree, p: list[float], rng: Rng, node: int, algo: int) -> int:
    n_actions = int(p[T.P_N_ACTIONS])
    if n_actions == 1:
        return 0
    nd = tree.nodes[node]
    if algo in (T.ALGO_UCT, T.ALGO_THOMPSON):
        return (len(nd.children) + nd.pending) % n_actions
    best, best_val = 0, -math.inf
    for a in range(n_actions):
        if p[T.P_MODEL_CHOICE] > 0:
            xs = [tree.nodes[c].score for c in nd.children if tree.nodes[c].action == a]
        else:
            xs = [x.score for x in tree.nodes[1:] if x.action == a]
        val = posterior_sample(len(xs), sum(xs), sum(x * x for x in xs), p, rng)
        if val > best_val:
            best, best_val = a, val
    return best


def gen_beats_cont(tree: NaiveTree, p: list[float], rng: Rng, node: int) -> bool:
    vl = p[T.P_VIRTUAL]
    nd = tree.nodes[node]
    gen = [tree.nodes[c].score for c in nd.children]
    pg = nd.pending
    g = posterior_sample(
        len(gen) + pg, sum(gen) + vl * pg, sum(x * x for x in gen) + vl * vl * pg, p, rng
    )
    cont: list[float] = []
    for c in nd.children:
        cont.extend(tree.subtree_scores(c)[1:])  # below the child, not its own score
    pc = sum(tree.pending_in(c) for c in nd.children)
    cval = posterior_sample(
        len(cont) + pc, sum(cont) + vl * pc, sum(x * x for x in cont) + vl * vl * pc, p, rng
    )
    return g >= cval


def mixed_choice(tree: NaiveTree, p: list[float], rng: Rng, node: int, max_depth: int) -> int:
    vl = p[T.P_VIRTUAL]
    sigma0, tau_min2, m0 = p[T.P_SIGMA0], p[T.P_TAU_MIN] ** 2, p[T.P_PRIOR_M]
    kids = _kernel_order(tree.nodes[node].children)
    st = [tree.stats(c, vl) for c in kids]
    used = [(n, s, q) for n, s, q in st if n > 0]
    if not used:
        return -1
    k = len(used)
    within = sum(max(q - s * s / n, 0.0) for n, s, q in used)
    dof = sum(n - 1 for n, _, _ in used)
    sigma2 = (sigma0 + within) / (1 + dof)
    ybars = [s / n for n, s, _ in used]
    if k >= 2:
        mean_y = sum(ybars) / k
        between = sum((y - mean_y) ** 2 for y in ybars) / (k - 1)
        tau2 = max(between - sigma2 * sum(1 / n for n, _, _ in used) / k, tau_min2)
    else:
        tau2 = max(sigma0, tau_min2)
    w0 = 1 / (tau2 + sigma0)
    ws = [1 / (tau2 + sigma2 / n) for n, _, _ in used]
    mu = (m0 * w0 + sum(w * y for w, y in zip(ws, ybars, strict=True))) / (w0 + sum(ws))
    best, best_val = -1, mu + math.sqrt(tau2 + 1 / (w0 + sum(ws))) * rng.normal()
    for c, (n, s, _) in zip(kids, st, strict=True):
        if tree.nodes[c].depth >= max_depth:
            continue
        prec = 1 / tau2 + n / sigma2
        val = (mu / tau2 + s / sigma2) / prec + rng.normal() / math.sqrt(prec)
        if val > best_val:
            best, best_val = c, val
    return best


def select_expansion(tree: NaiveTree, p: list[float], rng: Rng) -> tuple[int, int]:
    algo = int(p[T.P_ALGO])
    max_depth = int(p[T.P_MAX_DEPTH])
    width = int(p[T.P_WIDTH])
    node = 0
    while True:
        nd = tree.nodes[node]
        child = -1
        if nd.depth + 1 > max_depth:
            expand = True
        elif algo in (T.ALGO_UCT, T.ALGO_THOMPSON):
            expand = len(nd.children) + nd.pending < width
            if not expand:
                child = best_child(tree, p, rng, node, algo, max_depth)
                expand = child < 0
        elif algo == T.ALGO_AB_MCTS_A:
            expand = not nd.children or gen_beats_cont(tree, p, rng, node)
            if not expand:
                pooled = (
                    int(p[T.P_DIST]) != T.DIST_BETA
                    and p[T.P_PRIOR_NU] == 1.0
                    and p[T.P_TWO_PLAYER] == 0.0
                )
                if pooled:
                    child = best_child_pooled(tree, p, rng, node, max_depth)
                else:
                    child = best_child(tree, p, rng, node, algo, max_depth)
                expand = child < 0
        else:
            expand = not nd.children
            if not expand:
                child = mixed_choice(tree, p, rng, node, max_depth)
                expand = child < 0
        if expand:
            action = choose_action(tree, p, rng, node, algo)
            nd.pending += 1
            tree.unpool_path(node)
            return node, action
        node = child


def tell(tree: NaiveTree, parent: int, action: int, score: float) -> int:
    tree.nodes[parent].pending -= 1
    tree.unpool_path(parent)
    return tree.add(parent, action, score)


# --- environments -----------------------------------------------------------------------
def mix(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return (z ^ (z >> 31)) >> 1


def child_state(state: int, action: int) -> int:
    return mix(((state & M64) * 31 + action + 1) & M64)


def hash01(x: int) -> float:
    return (mix(x & M64) >> 10) / 9007199254740992.0


def game_step(params: list[float], state: int, action: int, depth: int, rng: Rng):
    b, d = int(params[0]), int(params[1])
    child = child_state(state, action)
    s = child
    for _ in range(depth, d):
        s = child_state(s, rng.integers(b))
    return child, hash01(s)


def random_walk_step(params: list[float], state: int, action: int, depth: int, rng: Rng):
    b, d = int(params[0]), params[1]
    pos = state + 2 * action - (b - 1)
    score = 0.5 + pos / (2.0 * d * max(b - 1, 1)) + params[2] * rng.normal()
    return pos, min(max(score, 0.0), 1.0)


def minimax(state: int, depth: int, b: int, d: int) -> float:
    if depth == d:
        return hash01(state)
    vals = [minimax(child_state(state, a), depth + 1, b, d) for a in range(b)]
    return max(vals) if depth % 2 == 0 else min(vals)


def env_search(
    tree: NaiveTree,
    p: list[float],
    rng: Rng,
    step_fn: Any,
    env_params: list[float],
    branching: int,
    depth: int,
    iterations: int,
) -> None:
    algo = int(p[T.P_ALGO])
    for _ in range(iterations):
        node = 0
        while True:
            nd = tree.nodes[node]
            if nd.depth >= depth:
                nd.terminal_visits.append(nd.score)
                break
            if len(nd.children) < branching:
                a = len(nd.children)
                st, score = step_fn(env_params, nd.env_state, a, nd.depth + 1, rng)
                new = tree.add(node, a, score)
                tree.nodes[new].env_state = st
                break
            node = best_child(tree, p, rng, node, algo, depth + 1)
