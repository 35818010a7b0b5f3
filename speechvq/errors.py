"""Exceptions for mistakes a user can fix: the CLI prints their one-line message and exits 2."""


class SpeechVQError(Exception):
    """A user-facing error whose message is one line naming the file or value at fault."""


class AudioError(SpeechVQError):
    """An audio file is missing, unreadable, corrupt, empty, too short or not finite."""


class DataError(SpeechVQError):
    """A corpus, manifest, alignment or codes directory is missing or malformed."""


class CheckpointError(SpeechVQError):
    """A checkpoint is missing, of another model kind, or of an unsupported format version."""


class UnknownSpeakerError(SpeechVQError):
    """A speaker name the model was not trained on."""
