module github.com/weirhq/weir/bench/scoring

go 1.26.8

require (
	github.com/dmitryikh/leaves v0.0.0-20230708180554-25d19a787328
	github.com/weirhq/weir v0.0.0-00010101000000-000000000000
)

// Weir from this checkout.
replace github.com/weirhq/weir => ../..
