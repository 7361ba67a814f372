"""Face restoration (GFPGAN through spandrel) and region detectors (YOLOv8 ONNX through OpenCV) for Restore
faces and the detailer."""
