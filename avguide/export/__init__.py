"""Export animations to the formats other tools read (issue 19).

Formats:

* **ARKit blendshape weights** (:mod:`avguide.export.arkit`): :func:`solve_arkit` turns an
  animator's (T, V, 3) vertices into (T, 52) weights in [0, 1] of Apple's 52 ARKit blendshapes
  (bounded least squares on the head's blendshapes, exact per frame, fast for long clips), which
  drive Unity / Unreal / MetaHuman / three.js rigs. Written as

  - a **Live Link Face CSV** (:func:`write_arkit_csv`, read back by :func:`read_arkit_csv`): the
    layout of Epic's iPhone app that Unreal imports: ``Timecode`` (``HH:MM:SS:FF.fff``),
    ``BlendShapeCount`` (61), 52 capitalised blendshape columns, 9 head / eye rotations (0);
  - **JSON** (:func:`write_arkit_json`): fps, names, per-frame weights and the fit's error.

* **glTF 2.0 binary** (:mod:`avguide.export.gltf`, :func:`write_glb`): the head mesh with its
  blendshapes as named morph targets and the weights as a morph-weight animation, for Blender,
  three.js, Unity (glTFast) and game engines.

* **OBJ sequence** (:mod:`avguide.export.obj`, :func:`write_obj_sequence`): one OBJ mesh per
  frame (``frame_00000.obj`` ...), for tools that import numbered meshes.

Example (the embedded head; ``vertices`` (T, 4742, 3) in metres from an animator at 30 fps)::

    from avguide.assets.head import load_head
    from avguide.export import solve_arkit, write_arkit_csv, write_glb, head_vertex_colors

    head = load_head()
    fit = solve_arkit(vertices, head.vertices, head.blendshapes)
    write_arkit_csv("take.csv", fit.weights, fps=30)
    write_glb("take.glb", head.vertices, head.faces, head.blendshapes, fit.weights, fps=30,
              vertex_colors=head_vertex_colors(head))

Every writer is atomic (:mod:`avguide.io`) and raises one ``ValueError`` naming the function and
the argument for wrong shapes, NaN/inf, T = 0, fps <= 0 or face indices out of range: arrays are
the caller's, so a wrong one is a programming error that keeps its traceback (files a user gives
are checked where they are read, :mod:`avguide.io`; a CSV by :func:`read_arkit_csv`).
"""

from avguide.export.arkit import (ArkitFit, read_arkit_csv, solve_arkit, write_arkit_csv,
                                  write_arkit_json)
from avguide.export.gltf import head_vertex_colors, write_glb
from avguide.export.obj import write_obj_sequence

__all__ = ["ArkitFit", "head_vertex_colors", "read_arkit_csv", "solve_arkit", "write_arkit_csv",
           "write_arkit_json", "write_glb", "write_obj_sequence"]
