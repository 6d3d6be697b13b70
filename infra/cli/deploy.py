"""`twinpipe overlay`: a kustomize overlay for one's own project from Terraform's outputs
(:mod:`infra.overlay`)."""

from __future__ import annotations

from infra.overlay import write_overlay


def cmd_overlay(args) -> int:
    path = write_overlay(args.terraform_output, args.out, tfx_image=args.tfx_image,
                         torch_image=args.torch_image)
    print(f"wrote {path}; render it with `kubectl kustomize {path.parent}`, apply it with "
          f"`kubectl apply -k {path.parent}`, deploy with `twinpipe deploy --overlay {path.parent}`")
    return 0


def add_overlay_parser(sub) -> None:
    o = sub.add_parser("overlay", help="write a kustomize overlay for your project from Terraform's "
                                       "outputs (terraform output -json)")
    o.add_argument("--terraform-output", required=True, metavar="TF_JSON",
                   help="the file `terraform output -json > tf.json` wrote in terraform/envs/<env>")
    o.add_argument("--out", required=True, metavar="DIR",
                   help="the overlay folder to write (kustomization.yaml; it references the "
                        "repository's k8s/base by a relative path)")
    o.add_argument("--tfx-image", default=None, metavar="IMAGE",
                   help="the TFX server's image (default: Terraform's tfx_image output)")
    o.add_argument("--torch-image", default=None, metavar="IMAGE",
                   help="the torch server's image (default: Terraform's torch_image output)")
    o.set_defaults(func=cmd_overlay)
