// Get-VDiskChain: the backing chain of each image, top first, as `qemu-img info --backing-chain` lists it.
// -Format declares the top image's format instead of probing it; the layers beneath take the format their
// overlay records, else they are probed.
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Gets the backing chain of disk images, one object per layer.</summary>
[Cmdlet(VerbsCommon.Get, "VDiskChain", DefaultParameterSetName = PathSet)]
[OutputType(typeof(VDiskChainNode))]
public sealed class GetVDiskChainCommand : ImageInputCmdletBase
{
    /// <summary>Format of the top image of each chain; by default it is probed from its content.</summary>
    [Parameter]
    public VDiskFormat Format { get; set; }

    /// <summary>Writes one VDiskChainNode per layer; a broken chain is an error naming the chain and nothing is written.</summary>
    protected override void ProcessImage(string fullPath)
    {
        var format = IsBound(nameof(Format)) ? Format.ToEngine() : (Engine.Core.ImageFormat?)null;
        if (Attempt(fullPath, () => RunCancellable(cancel => InspectImage.Chain(fullPath, format, cancel))) is not { } chain) return;
        foreach (var node in chain) WriteObject(VDiskChainNode.From(node));
    }
}
