"""Ways into the sidecar: HTTP request bodies (:mod:`.body`) and the Fluentd forward
protocol (:mod:`.forward`). Each hands decoded records to the sidecar's ``accept``."""
