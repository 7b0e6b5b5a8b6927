//! Test-host tooling for rsplb's multi-host tests: network namespaces and veth pairs that a test
//! creates with unique names and addresses and always removes (also on panic).
