# OCI images of the four filters (harness/OCI.md). Include from the top-level Makefile:
#   include wasmplugins/image.mk
#
#   make image        build the .wasm filters, write OCI image layouts in both of Istio's
#                     formats under $(IMAGE_OUT), and pin wasmplugins/**/*.yaml (url and
#                     sha256 = manifest digest of the $(IMAGE_FORMAT) image)
#   make image-push   the same, then push the $(IMAGE_FORMAT) images to $(IMAGE_REPO)
#                     (e.g. IMAGE_REPO=127.0.0.1:5000/meshward for a loopback registry)

IMAGE_REPO ?= ghcr.io/meshward
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE_FORMAT ?= compat
IMAGE_OUT ?= target/oci
IMAGE_MANIFESTS ?= wasmplugins
MESHWARD_OCI ?= cargo run -q -p meshward-harness --bin meshward -- oci
IMAGE_FILTERS := meshward-waf meshward-tenant meshward-ratelimit meshward-audit

.PHONY: image image-push
image:
	cargo build --release --target wasm32-wasip1 $(addprefix -p ,$(IMAGE_FILTERS))
	$(MESHWARD_OCI) build --out $(IMAGE_OUT) --repo $(IMAGE_REPO) --tag $(IMAGE_TAG) \
		--digest-file $(IMAGE_OUT)/digests.txt
	$(MESHWARD_OCI) pin --manifests $(IMAGE_MANIFESTS) --digest-file $(IMAGE_OUT)/digests.txt \
		--format $(IMAGE_FORMAT)

image-push: image
	$(MESHWARD_OCI) build --out $(IMAGE_OUT) --repo $(IMAGE_REPO) --tag $(IMAGE_TAG) \
		--format $(IMAGE_FORMAT) --push
