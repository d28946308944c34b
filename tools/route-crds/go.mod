// The route CRDs the end-to-end platform installs, pinned: Gateway API (GRPCRoute v1) and Istio
// (VirtualService v1). No Go is built from here: scripts/test-deps downloads the two modules
// through the Go module proxy (checked against go.sum) and copies their CRD files.
module jobshop-rollout/tools/route-crds

go 1.24.0

require (
	istio.io/api v1.32.0
	sigs.k8s.io/gateway-api v1.4.1
)
