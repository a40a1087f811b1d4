// Get-VDiskMap: where the data of each image lies (qemu-img map --output=json), through its backing chain, as
// VDiskMapRange objects merged into the fewest ranges. Reads without locks, like qemu-img map -U.
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Gets the allocation map of disk images.</summary>
[Cmdlet(VerbsCommon.Get, "VDiskMap", DefaultParameterSetName = PathSet)]
[OutputType(typeof(VDiskMapRange))]
public sealed class GetVDiskMapCommand : ImageInputCmdletBase
{
    /// <summary>Format of the images; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat Format { get; set; }

    /// <summary>Writes the map of one image, range by range in guest order.</summary>
    protected override void ProcessImage(string fullPath)
    {
        var format = IsBound(nameof(Format)) ? Format.ToEngine() : (Engine.Core.ImageFormat?)null;
        if (Attempt(fullPath, () => RunCancellable(cancel => MapImage.Run(fullPath, format, cancel).ToList())) is not { } ranges) return;
        foreach (var range in ranges) WriteObject(VDiskMapRange.From(fullPath, range));
    }
}
