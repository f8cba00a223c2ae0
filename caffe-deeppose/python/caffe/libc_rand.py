"""glibc's rand() and libstdc++'s std::random_shuffle: what Caffe's HDF5Data shuffles with.

Caffe never seeds rand(), so its shuffles follow glibc's default sequence (seed 1) from the
start of the process; this module keeps one such process-wide sequence, so the first HDF5Data
shuffles of a run visit the rows in the same order as Caffe's.
"""


class _GlibcRand:
    """glibc's random() (TYPE_3: additive feedback, 31-word state), which rand() returns."""

    def __init__(self, seed=1):
        self.seed(seed)

    def seed(self, seed):
        seed = seed or 1
        r = [seed]
        for _ in range(1, 31):  # srandom_r: Park-Miller via Schrage's method
            hi, lo = divmod(r[-1], 127773)
            word = 16807 * lo - 2836 * hi
            r.append(word + 2147483647 if word < 0 else word)
        r += r[:3]
        for i in range(34, 344):  # the 310 discarded outputs
            r.append((r[i - 31] + r[i - 3]) & 0xFFFFFFFF)
        self._r = r[-34:]

    @property
    def state(self):
        """The 34 words the next outputs depend on (a JSON-able list)."""
        return list(self._r)

    @state.setter
    def state(self, words):
        self._r = list(words)

    def __call__(self):
        value = (self._r[-31] + self._r[-3]) & 0xFFFFFFFF
        self._r.append(value)
        del self._r[0]
        return value >> 1


rand = _GlibcRand()


def srand(seed):
    """Restart the sequence (C's srand); srand(1) gives the sequence of a fresh process."""
    rand.seed(seed)


def random_shuffle(items):
    """Shuffle the list in place as libstdc++'s std::random_shuffle(first, last) does."""
    for i in range(1, len(items)):
        j = rand() % (i + 1)
        items[i], items[j] = items[j], items[i]
