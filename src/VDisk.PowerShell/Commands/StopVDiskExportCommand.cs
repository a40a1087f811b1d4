// Stop-VDiskExport (issue 12): stops exports Export-VDisk started in this session (from the pipeline, or -All):
// listeners and client connections are closed, requests in flight finish, the image is flushed and closed.
using System.Management.Automation;

namespace VDisk.PowerShell.Commands;

/// <summary>Stops NBD exports started by Export-VDisk.</summary>
[Cmdlet(VerbsLifecycle.Stop, "VDiskExport", DefaultParameterSetName = InputSet, SupportsShouldProcess = true)]
[OutputType(typeof(VDiskExport))]
public sealed class StopVDiskExportCommand : VDiskCmdletBase
{
    private const string InputSet = "InputObject";
    private const string AllSet = "All";

    /// <summary>The exports to stop (VDiskExport objects from Export-VDisk).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = InputSet)]
    [ValidateNotNull]
    public VDiskExport[] InputObject { get; set; } = Array.Empty<VDiskExport>();

    /// <summary>Stop every export running in this session.</summary>
    [Parameter(Mandatory = true, ParameterSetName = AllSet)]
    public SwitchParameter All { get; set; }

    /// <summary>Write each export stopped (its Running property now False).</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>Stops the exports given.</summary>
    protected override void ProcessRecord()
    {
        foreach (var export in All ? ExportRegistry.All : InputObject)
        {
            if (!ShouldProcess($"{export.Uri} ({export.Path})", "Stop NBD export")) continue;
            Attempt(export.Path, () =>
            {
                if (!ExportRegistry.Stop(export)) WriteVerbose($"{export.Uri} was stopped already.");
                return export;
            });
            if (PassThru) WriteObject(export);
        }
    }
}
