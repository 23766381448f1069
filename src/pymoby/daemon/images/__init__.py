"""The image service (graph-driver image store): list, inspect, history, tag, delete, prune,
import, load and save -- `service.ImageService` is what the /images routes get.

Modules, one idea each: `service` (the ImageBackend), `load` / `spool` / `formats` (docker load),
`save` (docker save), `importer` / `changes` (docker import), `listing` (images, inspect,
history), `delete` (rmi, prune), `bridge` (loop <-> thread byte streams), `meter` (progress),
`platforms` (host platform and matching).
"""
