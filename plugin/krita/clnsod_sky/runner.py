"""Runs the core in its own process with QProcess, so Krita's UI thread never waits on it."""

from __future__ import annotations

from PyQt5.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, pyqtSignal

from . import bridge_client

KILL_AFTER_MS = 2000  # PROTOCOL.md: terminate, then kill after 2 s
STDERR_KEEP = 8192


class CoreRun(QObject):
    """One core run. Emits ``progress`` while running, then exactly one of ``succeeded``/``no_sky``/
    ``failed``/``cancelled``."""

    progress = pyqtSignal(float, str)
    succeeded = pyqtSignal(dict)  # the "done" event's files
    no_sky = pyqtSignal()  # done, but the photo has no sky: nothing to add
    failed = pyqtSignal(str)
    cancelled = pyqtSignal()

    def __init__(self, job: bridge_client.Job, python: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self._python = python
        self._stdout = b""
        self._stderr = b""
        self._final: bridge_client.Event | None = None
        self._over = False
        self._cancelling = False
        self._process = QProcess(self)
        environment = QProcessEnvironment()
        for key, value in bridge_client.core_environment().items():
            environment.insert(key, value)
        self._process.setProcessEnvironment(environment)
        self._process.readyReadStandardOutput.connect(self._read_stdout)
        self._process.readyReadStandardError.connect(self._read_stderr)
        self._process.finished.connect(self._on_finished)
        self._process.errorOccurred.connect(self._on_error)

    def start(self) -> None:
        command: list[str] = self.job.command(self._python)
        self._process.start(command[0], command[1:])

    def cancel(self) -> None:
        """Terminate the core (kill after 2 s); ``cancelled`` follows once it is gone."""
        if self._over or self._cancelling:
            return
        self._cancelling = True
        if self._process.state() == QProcess.NotRunning:
            self._finish_cancelled()
            return
        self._process.terminate()
        QTimer.singleShot(KILL_AFTER_MS, self._kill_if_running)

    def _kill_if_running(self) -> None:
        if self._process.state() != QProcess.NotRunning:
            self._process.kill()

    def _read_stdout(self) -> None:
        self._stdout += bytes(self._process.readAllStandardOutput())
        *lines, self._stdout = self._stdout.split(b"\n")
        for line in lines:
            self._handle_line(line.decode("utf-8", "replace"))

    def _handle_line(self, line: str) -> None:
        event = bridge_client.parse_event(line)
        if event is None:
            return
        if event.kind == "progress":
            if not self._cancelling:
                self.progress.emit(event.fraction, event.message)
        else:
            self._final = event

    def _read_stderr(self) -> None:
        self._stderr = (self._stderr + bytes(self._process.readAllStandardError()))[-STDERR_KEEP:]

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.FailedToStart and not self._over:
            self._end()
            self.failed.emit(f"cannot start the CLN-SOD core {self._python}: {self._process.errorString()}")

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        if self._over:
            return
        self._read_stdout()
        if self._stdout.strip():
            self._handle_line(self._stdout.decode("utf-8", "replace"))
        self._read_stderr()
        if self._cancelling:
            self._finish_cancelled()
            return
        final = self._final
        self._end()
        if final is not None and final.kind == "done" and not final.sky_found:
            self.no_sky.emit()
        elif final is not None and final.kind == "done":
            self.succeeded.emit(dict(final.files or {}))
        elif final is not None:
            self.failed.emit(final.message)
        else:
            code: int | None = exit_code if exit_status == QProcess.NormalExit else None
            self.failed.emit(bridge_client.failure_message(code, self._stderr.decode("utf-8", "replace")))

    def _finish_cancelled(self) -> None:
        self._end()
        self.cancelled.emit()

    def _end(self) -> None:
        self._over = True

    @property
    def running(self) -> bool:
        return not self._over
