"""The composition root: the `tfmirror` command, the web app, and the wiring of every
package's jobs to the services they need. The one place that imports from every floor
of the house below it (mirror.core, the sides, sync_jobs | verify | bundle)."""
