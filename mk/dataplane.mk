# Kernel data plane (dataplane/, healthcheck/): benchmarks and tests.
# They need root, iproute2, nftables and (bench-dataplane) iperf3:
#   apt-get install -y nftables iproute2 iperf3

.PHONY: bench-dataplane bench-programming test-dataplane

## bench-dataplane: throughput and new connections/s, direct to a pod vs through the LB address
bench-dataplane:
	$(GO) run ./bench/dataplane

## bench-programming: 10,000 Services in a real nftables table; p99 endpoint change to live, full sync time
bench-programming:
	$(GO) run ./bench/programming -services 10000

## test-dataplane: unit, golden and real-kernel (network namespace) tests of the data plane
test-dataplane:
	$(GO) test -count=1 ./dataplane/... ./healthcheck/...
