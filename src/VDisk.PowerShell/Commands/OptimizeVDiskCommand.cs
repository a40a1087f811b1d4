// Optimize-VDisk: gives back the space qcow2 images no longer need. Quick mode (the default) works in place: clusters
// that read as zeroes become zero clusters, leaked clusters are freed, free space is punched out and cut off the end.
// -Full rewrites the image compactly and replaces it atomically. Writes a VDiskOptimizeResult (BytesWonBack) per image;
// -WhatIf says what would be done and changes nothing. The guest view never changes.
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Gives back the space qcow2 images no longer need.</summary>
[Cmdlet(VerbsCommon.Optimize, "VDisk", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
[OutputType(typeof(VDiskOptimizeResult))]
public sealed class OptimizeVDiskCommand : ImageInputCmdletBase
{
    /// <summary>Rewrites the whole image compactly (through the convert pipeline) instead of optimizing in place.</summary>
    [Parameter]
    public SwitchParameter Full { get; set; }

    /// <summary>Optimizes one image and writes what it won back.</summary>
    protected override void ProcessImage(string fullPath)
    {
        string action = Full ? "Rewrite compactly and replace (full optimize)" : "Give back zero-filled, leaked and free clusters (quick optimize)";
        if (!ShouldProcess(fullPath, action)) return;
        var result = Attempt(fullPath, () => RunWithProgress("Optimize-VDisk", $"Optimizing {fullPath}", 0,
            (meter, cancel) => OptimizeImage.Run(fullPath, Full, meter, cancel)));
        if (result is not null) WriteObject(VDiskOptimizeResult.From(result));
    }
}
