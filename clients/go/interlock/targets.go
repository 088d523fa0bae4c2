package interlock

import (
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// RoundRobinServiceConfig is the service config a client of several
// replicas dials with: calls spread over every address that answers.
const RoundRobinServiceConfig = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// replicasScheme names the resolver of a list of replicas given to Dial.
const replicasScheme = "interlock-replicas"

// ReplicaAddresses splits a comma-separated list of replicas
// ("10.0.0.1:50051,10.0.0.2:50051") into its addresses. It returns nil for a
// target that is not a list (one address, or a target with a scheme), and an
// error for a list whose addresses are not all IP:PORT of one IP version,
// the same rule as the Python and TypeScript clients (whose gRPC resolvers
// take IP addresses only): for host names, give one DNS name that resolves
// to every replica ("dns:///interlock.example:50051").
func ReplicaAddresses(target string) ([]string, error) {
	if !strings.Contains(target, ",") || strings.Contains(target, ":///") {
		return nil, nil
	}
	var out []string
	version := 0
	for _, part := range strings.Split(target, ",") {
		address := strings.TrimSpace(part)
		host, port, err := net.SplitHostPort(address)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("a replica address must be IP:PORT, not %q", part)
		}
		ip := net.ParseIP(host)
		if ip == nil {
			return nil, fmt.Errorf("a list of replicas takes IP addresses (127.0.0.1:50051, [::1]:50051), "+
				"not the host name in %q; for names, give one DNS name that resolves to every replica "+
				"(dns:///interlock.example:50051)", part)
		}
		v := 6
		if ip.To4() != nil {
			v = 4
		}
		if version != 0 && v != version {
			return nil, fmt.Errorf("a list of replicas cannot mix IPv4 and IPv6 addresses")
		}
		version = v
		out = append(out, address)
	}
	return out, nil
}

// resolveTarget is what Dial dials for target, and the options that go with
// it: a list of replicas gets a resolver of its own holding the addresses and
// round_robin; a target naming a resolver ("dns:///name:port") gets
// round_robin over what it resolves to; one address is dialled as it is.
func resolveTarget(target string) (string, []grpc.DialOption, error) {
	addresses, err := ReplicaAddresses(target)
	if err != nil {
		return "", nil, err
	}
	if addresses == nil {
		if strings.HasPrefix(target, "dns:") {
			return target, []grpc.DialOption{grpc.WithDefaultServiceConfig(RoundRobinServiceConfig)}, nil
		}
		return target, nil, nil
	}
	r := manual.NewBuilderWithScheme(replicasScheme)
	state := resolver.State{}
	for _, a := range addresses {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r.InitialState(state)
	// The first address is the authority: TLS checks the servers' certificate against its host.
	return replicasScheme + ":///" + addresses[0], []grpc.DialOption{
		grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(RoundRobinServiceConfig),
	}, nil
}
