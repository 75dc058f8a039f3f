# Tests of the wire protocol, the daemon's generation rings and gtraced.
gtrace_check_test(test-wire-codec SOURCES unit/test-wire-codec.c LIBS gtrace_proto TIMEOUT 30)
gtrace_check_test(test-ring-retention SOURCES unit/test-ring-retention.c LIBS gtrace_flightrec TIMEOUT 30)
