// Get-VDiskChain: the backing chain of each image, top first, as `qemu-img info --backing-chain` lists it.
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Gets the backing chain of disk images, one object per layer.</summary>
[Cmdlet(VerbsCommon.Get, "VDiskChain", DefaultParameterSetName = PathSet)]
[OutputType(typeof(VDiskChainNode))]
public sealed class GetVDiskChainCommand : ImageInputCmdletBase
{
    /// <summary>Writes one VDiskChainNode per layer; a broken chain is an error naming the chain and nothing is written.</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (Attempt(fullPath, () => InspectImage.Chain(fullPath, cancel: Cancellation)) is not { } chain) return;
        foreach (var node in chain) WriteObject(VDiskChainNode.From(node));
    }
}
