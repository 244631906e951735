"""The line PC's side: the inspection bundle, the engine that judges parts, the exported network, the OOD guard.

Imports no params machinery (vitinspect.config) and no torch at module level: a line PC runs the ONNX engine.
"""
