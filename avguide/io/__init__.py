"""The boundary layer: every file avguide reads or writes passes through these functions.

A loader checks that its file exists and is a file, parses it and validates what the caller
needs; every way the file can be broken (OSError, UnicodeDecodeError, JSON / YAML / pickle /
zip / safetensors / torch errors, wrong shape, NaN) becomes one
:class:`~avguide.errors.BadInputError` line ``<path>: <what is wrong>`` (a missing file:
:class:`~avguide.errors.MissingFileError`), which the CLI prints before exiting with status 2.
Writers are atomic; output paths are checked before the work starts.

Reading (:mod:`avguide.io.files`, :mod:`avguide.io.arrays`, :mod:`avguide.io.media`)::

    read_bytes, read_text                   any file; strict UTF-8 text
    load_json, load_jsonl, load_yaml        JSON (top-level type checked), JSON lines, YAML
    safe_load_pickle                        numpy arrays and plain containers only
    load_safetensors, load_torch_state      tensors (weights_only=True for torch files)
    load_array, load_npz                    .npy / .npz, never pickled objects; named arrays of a .npz
    array_header, audio_info                shape and dtype / samples, rate and channels, headers only
    load_vertices, load_faces, load_indices vertex sequences, (F, 3) faces, index lists
    load_audio, audio_duration              16 kHz mono float32; duration of a valid file

Writing (:mod:`avguide.io.output`, :mod:`avguide.io.media`)::

    check_output_file, check_output_dir     before the work: not a directory / a file in the
                                            way, the directory writable (nothing is created)
    atomic_path                             the temporary-file-then-rename primitive
    write_bytes_atomic, write_text_atomic, write_json_atomic, save_npy_atomic,
    save_safetensors_atomic, save_torch_atomic, save_wav, append_jsonl
    video_writer                            ffmpeg MP4 writer: progress, never an orphan ffmpeg
"""

from avguide.io.arrays import array_header, load_array, load_faces, load_indices, load_npz, load_vertices
from avguide.io.files import (existing_file, load_json, load_jsonl, load_safetensors, load_torch_state,
                              load_yaml, one_line, read_bytes, read_text, safe_load_pickle)
from avguide.io.media import MIN_SECONDS, audio_duration, audio_info, load_audio, output_problem, save_wav, video_writer
from avguide.io.output import (append_jsonl, atomic_path, check_output_dir, check_output_file,
                               os_reason, save_npy_atomic, save_safetensors_atomic, save_torch_atomic,
                               write_bytes_atomic, write_json_atomic, write_text_atomic)

__all__ = [
    "append_jsonl", "array_header", "atomic_path", "audio_duration", "audio_info",
    "check_output_dir", "check_output_file", "existing_file", "load_array", "load_audio",
    "load_faces", "load_indices", "load_json", "load_jsonl", "load_npz", "load_safetensors",
    "load_torch_state", "load_vertices", "load_yaml", "MIN_SECONDS", "one_line", "os_reason", "output_problem",
    "read_bytes", "read_text", "safe_load_pickle", "save_npy_atomic", "save_safetensors_atomic",
    "save_torch_atomic", "save_wav", "video_writer", "write_bytes_atomic", "write_json_atomic",
    "write_text_atomic",
]
