// Terraform-shaped flow through gophercloud v2, unmodified: create (boot from volume) -> attach ->
// update (2.85 delete_on_termination) -> extend (block storage v3) -> instance actions -> detach -> delete.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/instanceactions"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
)

func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL %s: %v\n", what, err)
		os.Exit(1)
	}
	fmt.Println("ok", what)
}

func waitVolume(ctx context.Context, c *gophercloud.ServiceClient, id, status string) *volumes.Volume {
	for i := 0; i < 600; i++ {
		v, err := volumes.Get(ctx, c, id).Extract()
		must(err, "volume get")
		if v.Status == status {
			return v
		}
		time.Sleep(500 * time.Millisecond)
	}
	must(fmt.Errorf("volume %s never %s", id, status), "wait volume")
	return nil
}

func waitServer(ctx context.Context, c *gophercloud.ServiceClient, id, status string) {
	for i := 0; i < 600; i++ {
		s, err := servers.Get(ctx, c, id).Extract()
		must(err, "server get")
		if s.Status == status {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	must(fmt.Errorf("server %s never %s", id, status), "wait server")
}

func main() {
	ctx := context.Background()
	base := os.Args[1]
	pc := &gophercloud.ProviderClient{}
	pc.SetToken("noauth")
	compute := &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: base + "/v2.1/", Type: "compute"}
	compute.Microversion = "2.85"
	bs := &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: base + "/v3/", Type: "block-storage"}
	bs.Microversion = "3.42"

	fl, err := flavors.ListDetail(compute, nil).AllPages(ctx)
	must(err, "flavor list")
	all, err := flavors.ExtractFlavors(fl)
	must(err, "flavor extract")
	fmt.Println("flavors:", len(all), all[0].ID)

	boot, err := volumes.Create(ctx, bs, volumes.CreateOpts{Size: 1, Name: "gc-boot"}, nil).Extract()
	must(err, "boot volume create")
	waitVolume(ctx, bs, boot.ID, "available")
	data, err := volumes.Create(ctx, bs, volumes.CreateOpts{Size: 1, Name: "gc-data"}, nil).Extract()
	must(err, "data volume create")
	waitVolume(ctx, bs, data.ID, "available")

	srv, err := servers.Create(ctx, compute, servers.CreateOpts{
		Name: "gc-vm", FlavorRef: all[0].ID, Networks: "none",
		BlockDevice: []servers.BlockDevice{{UUID: boot.ID, SourceType: servers.SourceVolume, DestinationType: servers.DestinationVolume, BootIndex: 0}},
	}, nil).Extract()
	must(err, "server create (boot from volume)")
	waitServer(ctx, compute, srv.ID, "ACTIVE")

	att, err := volumeattach.Create(ctx, compute, srv.ID, volumeattach.CreateOpts{VolumeID: data.ID}).Extract()
	must(err, "attach")
	fmt.Println("device:", att.Device)
	waitVolume(ctx, bs, data.ID, "in-use")

	dot := true
	// gophercloud has no Update for volume attachments: the provider's own request, as Terraform does
	body := map[string]any{"volumeAttachment": map[string]any{"volumeId": data.ID, "delete_on_termination": dot}}
	_, err = compute.Put(ctx, compute.ServiceURL("servers", srv.ID, "os-volume_attachments", data.ID), body, nil, &gophercloud.RequestOpts{OkCodes: []int{202}})
	must(err, "update delete_on_termination (2.85)")
	got, err := volumeattach.Get(ctx, compute, srv.ID, data.ID).Extract()
	must(err, "attachment get")
	if got.DeleteOnTermination == nil || !*got.DeleteOnTermination {
		must(fmt.Errorf("delete_on_termination not true"), "update visible")
	}

	must(volumes.ExtendSize(ctx, bs, data.ID, volumes.ExtendSizeOpts{NewSize: 2}).ExtractErr(), "extend in-use to 2 GiB (3.42)")
	for i := 0; i < 600; i++ {
		v, _ := volumes.Get(ctx, bs, data.ID).Extract()
		if v != nil && v.Size == 2 && v.Status == "in-use" {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Println("ok extended")

	compute.Microversion = "2.84"
	pages, err := instanceactions.List(compute, srv.ID, nil).AllPages(ctx)
	must(err, "instance actions list")
	acts, err := instanceactions.ExtractInstanceActions(pages)
	must(err, "instance actions extract")
	for _, a := range acts {
		fmt.Println("action:", a.Action, a.RequestID)
	}
	if len(acts) > 0 {
		a, err := instanceactions.Get(ctx, compute, srv.ID, acts[0].RequestID).Extract()
		must(err, "instance action show")
		fmt.Println("events:", len(*a.Events))
	}
	compute.Microversion = "2.85"

	must(volumeattach.Delete(ctx, compute, srv.ID, data.ID).ExtractErr(), "detach")
	waitVolume(ctx, bs, data.ID, "available")

	must(servers.Delete(ctx, compute, srv.ID).ExtractErr(), "server delete")
	for i := 0; i < 600; i++ {
		_, err := servers.Get(ctx, compute, srv.ID).Extract()
		if gophercloud.ResponseCodeIs(err, 404) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Println("ok deleted; PASS")
}
