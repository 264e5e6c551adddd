"""Plugins ▸ georefseg ▸ Settings: where the engine is, and whether it works."""

from __future__ import annotations

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QPushButton, QVBoxLayout

from . import settings
from .engine import INSTALL, EngineError, check_engine


class SettingsDialog(QDialog):
    """The engine's path (empty: found on PATH), with a Check button that runs ``georefseg --version``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("georefseg settings")
        self.path = QgsFileWidget()
        self.path.setStorageMode(QgsFileWidget.GetFile)
        self.path.setFilePath(settings.executable())
        self.path.lineEdit().setPlaceholderText("[found on PATH] or the georefseg program, or its venv/conda folder")
        self.status = QLabel(f"The engine is a separate installation: {INSTALL}")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)  # the install command can be copied
        check = QPushButton("Check")
        check.clicked.connect(self.check)
        form = QFormLayout()
        form.addRow("georefseg engine", self.path)
        form.addRow(check, self.status)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        column = QVBoxLayout(self)
        column.addLayout(form)
        column.addWidget(buttons)

    def check(self) -> bool:
        """Say which engine the path gives and its version, or what is wrong and how to fix it."""
        try:
            engine = check_engine(self.path.filePath())
        except EngineError as exc:
            self.status.setText(str(exc))
            return False
        self.status.setText(f"georefseg {engine.version_text} at {engine.path}")
        return True

    def accept(self) -> None:
        settings.set_executable(self.path.filePath())
        super().accept()
