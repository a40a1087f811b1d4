// Test-VDisk: checks the metadata of disk images (qemu-img check) and, with -Repair, repairs qcow2 images (-r leaks,
// -r all), writing a VDiskCheckResult per image, or only True / False with -Quiet. A repair asks first (ShouldProcess);
// one the check finds unsafe is refused with an ImageNotRepairable error and the file is left as it was.
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Checks disk images and repairs qcow2 images.</summary>
[Cmdlet(VerbsDiagnostic.Test, "VDisk", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
[OutputType(typeof(VDiskCheckResult), typeof(bool))]
public sealed class TestVDiskCommand : ImageInputCmdletBase
{
    /// <summary>What to repair: None (default), Leaks, or All.</summary>
    [Parameter]
    public VDiskRepair Repair { get; set; }

    /// <summary>Writes only True (healthy) or False per image.</summary>
    [Parameter]
    public SwitchParameter Quiet { get; set; }

    /// <summary>The image's format; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat Format { get; set; }

    /// <summary>Checks (and repairs) one image and writes the outcome.</summary>
    protected override void ProcessImage(string fullPath)
    {
        var mode = Repair switch { VDiskRepair.Leaks => RepairMode.Leaks, VDiskRepair.All => RepairMode.All, _ => RepairMode.None };
        if (mode != RepairMode.None && !ShouldProcess(fullPath, Repair == VDiskRepair.All
                ? "Repair refcounts, COPIED flags and the dirty bit" : "Give back leaked clusters"))
            mode = RepairMode.None; // -WhatIf, or the user said no: check only
        var format = IsBound(nameof(Format)) ? Format.ToEngine() : (Engine.Core.ImageFormat?)null;
        var result = Attempt(fullPath, () => RunWithProgress("Test-VDisk", $"{(mode == RepairMode.None ? "Checking" : "Repairing")} {fullPath}", 0,
            (_, cancel) => CheckImage.Run(fullPath, mode, format, cancel)));
        if (result is null) return;
        if (result.RepairRefused) WriteError(VDiskErrors.NotRepairable(fullPath, result.Unrepairable));
        if (Quiet) WriteObject(result.IsHealthy);
        else WriteObject(VDiskCheckResult.From(result));
    }
}
