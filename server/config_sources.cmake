# The sources that parse retain-server's command line (ParseServerConfig and the flag groups it
# calls). retain_server_lib compiles them, and so does the fuzzers' parser library (fuzz/), which
# has no gRPC service: a flag group added to server_config.cc goes here, or the fuzz build breaks.
set(RETAIN_SERVER_CONFIG_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/server_config.cc
  ${CMAKE_CURRENT_LIST_DIR}/security_flags.cc
  ${CMAKE_CURRENT_LIST_DIR}/history_flags.cc
  ${CMAKE_CURRENT_LIST_DIR}/tier_flags.cc
  # ParseRedisAddresses, which tier_flags.cc calls (no hiredis in it).
  ${CMAKE_CURRENT_LIST_DIR}/redis_endpoint.cc
  ${CMAKE_CURRENT_LIST_DIR}/http/http_flags.cc
)
