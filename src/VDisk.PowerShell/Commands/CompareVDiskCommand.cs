// Compare-VDisk: compares the guest content of images (qemu-img compare), whatever their formats and chains,
// as VDiskComparison objects, or only True / False with -Quiet.
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Compares what the guest sees in each image with another image.</summary>
[Cmdlet(VerbsData.Compare, "VDisk", DefaultParameterSetName = PathSet)]
[OutputType(typeof(VDiskComparison), typeof(bool))]
public sealed class CompareVDiskCommand : EncryptedImageInputCmdletBase
{
    /// <summary>The image to compare each input with, taken literally (no wildcards).</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string DifferencePath { get; set; } = string.Empty;

    /// <summary>Also requires equal virtual sizes and the same allocation (qemu-img compare -s).</summary>
    [Parameter]
    public SwitchParameter Strict { get; set; }

    /// <summary>Writes only True or False per input, like Test-Path.</summary>
    [Parameter]
    public SwitchParameter Quiet { get; set; }

    /// <summary>Format of the -Path image; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat FirstFormat { get; set; }

    /// <summary>Format of the -DifferencePath image; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat SecondFormat { get; set; }

    private string _differenceFull = string.Empty;

    /// <summary>Resolves -DifferencePath once against the current location; one that cannot be resolved stops the command.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        _differenceFull = ResolveLiteralPathOrStop(DifferencePath);
    }

    /// <summary>Compares one image with -DifferencePath and writes the outcome.</summary>
    protected override void ProcessImage(string fullPath)
    {
        string second = _differenceFull;
        string status = $"Comparing {System.IO.Path.GetFileName(fullPath)} with {System.IO.Path.GetFileName(second)}";
        var compared = Attempt(fullPath, () => RunWithProgress("Compare-VDisk", status, 0, (meter, cancel) =>
            CompareImages.Run(fullPath, second, Strict, IsBound(nameof(FirstFormat)) ? FirstFormat.ToEngine() : null,
                IsBound(nameof(SecondFormat)) ? SecondFormat.ToEngine() : null, meter, cancel)));
        if (compared is null) return;
        if (Quiet) WriteObject(compared.Equal);
        else WriteObject(VDiskComparison.From(compared));
    }
}
