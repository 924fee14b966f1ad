"""Scoring: detections -> metrics, pure numpy (no torch model, no dataset class).

`metrics` (AP, AR@AN, segment IoU), `fusion` (cross-window NMS of sliding-window detections), `evaluation`
(shift to video time, fuse, score; the results-JSON reader and writer).
"""
