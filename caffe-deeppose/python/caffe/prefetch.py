"""Background loading for the data layers: a thread keeps a queue of ready batches.

Reading, decoding and transforming run off the main thread (LMDB, OpenCV and numpy release the
GIL), so a net's forward takes a ready batch and does not wait when it need not.
"""
import queue
import threading

import torch


class Prefetcher:
    """Calls `load_batch()` (-> tuple of numpy arrays) on a thread and keeps the results as torch
    tensors (in pinned memory if `pin`, for fast non-blocking copies to a GPU), at most `depth`
    batches in all, the one last handed out included (as Caffe's `prefetch` batches: the thread
    starts on a batch once the consumer has asked for the one after the batch it holds). An
    exception in `load_batch` is raised by the next `get()`, and every one after it."""

    def __init__(self, load_batch, depth, pin=False, name="data"):
        depth = max(1, int(depth))
        self._queue = queue.Queue(maxsize=depth)
        self._slots = threading.Semaphore(depth)  # one per batch being loaded, ready or handed out
        self._handed = False  # whether the consumer holds a batch (its slot is freed by the next get)
        self._stop = threading.Event()
        self._error = None
        self._pin = pin
        self._thread = threading.Thread(target=self._run, args=(load_batch,), daemon=True,
                                        name=f"prefetch {name}")
        self._thread.start()

    def _run(self, load_batch):
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.1):
                continue
            try:
                item = tuple(torch.from_numpy(a) for a in load_batch())
                if self._pin:
                    item = tuple(t.pin_memory() for t in item)
            except BaseException as e:  # handed to the consumer, who raises it
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def get(self):
        """The next batch (a tuple of CPU tensors), waiting for it if it is not ready. The batch
        handed out before is then no longer counted: the thread may load one more."""
        if self._handed:
            self._handed = False
            self._slots.release()
        while self._error is None:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive():
                    self._error = RuntimeError(f"{self._thread.name}: the loading thread has stopped")
                continue
            if not isinstance(item, BaseException):
                self._handed = True
                return item
            self._error = item
        raise self._error

    def stop(self, then=()):
        """End the thread (it finishes the batch in hand), then call each of `then` (closing what
        the thread read from) once it has ended; whether it has ended."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            return False
        for close in then:
            close()
        return True
