# Help: the MAML built from docs/en-US is what Get-Help shows (broken MAML is silently replaced by generated
# help, so the synopsis is compared with the markdown), with an example for every cmdlet and a description for
# every parameter the cmdlet has, so a new parameter without documentation fails here.

BeforeDiscovery {
    $modulePath = if ($env:VDISK_MODULE_PATH) { $env:VDISK_MODULE_PATH } else { Join-Path $PSScriptRoot '../../out/VDisk/VDisk.psd1' }
    $module = Import-Module $modulePath -Force -PassThru
    $common = [System.Management.Automation.PSCmdlet]::CommonParameters
    $cmdlets = foreach ($name in $module.ExportedCmdlets.Keys | Sort-Object) {
        @{
            Name       = $name
            Parameters = @((Get-Command $name).Parameters.Keys | Where-Object { $_ -notin $common } | Sort-Object)
        }
    }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
    $docs = Join-Path $PSScriptRoot '../../docs/en-US'

    # The first paragraph under "## SYNOPSIS" in a cmdlet's markdown.
    function Get-MarkdownSynopsis([string] $Name) {
        $lines = Get-Content -LiteralPath (Join-Path $docs "$Name.md")
        $start = [Array]::IndexOf($lines, '## SYNOPSIS') + 1
        ($lines[$start..($lines.Count - 1)] | Where-Object { $_.Trim() } | Select-Object -First 1).Trim()
    }
}

Describe 'Help for <Name>' -ForEach $cmdlets {
    BeforeAll {
        $help = Get-Help $Name -Full
        $command = Get-Command $Name
    }

    It 'comes from the MAML file (synopsis as in docs)' {
        $help.Synopsis | Should -Be (Get-MarkdownSynopsis $Name)
        $help.Synopsis | Should -Not -Match "^$Name "
    }

    It 'has a description' {
        ($help.description.Text -join ' ').Trim() | Should -Not -BeNullOrEmpty
    }

    It 'has at least one example with code and remarks' {
        $examples = @($help.examples.example)
        $examples.Count | Should -BeGreaterThan 0
        foreach ($example in $examples) {
            $example.code | Should -Match $Name
            ($example.remarks.Text -join '').Trim() | Should -Not -BeNullOrEmpty
        }
    }

    It 'shows a syntax for each parameter set' {
        @($help.syntax.syntaxItem).Count | Should -Be $command.ParameterSets.Count
    }

    It 'describes parameter -<_>' -ForEach $Parameters {
        $parameter = $help.parameters.parameter | Where-Object name -EQ $_
        $parameter | Should -Not -BeNullOrEmpty -Because "-$_ needs a section in docs/en-US/$Name.md"
        ($parameter.description.Text -join ' ').Trim() | Should -Not -BeNullOrEmpty
    }

    It 'documents only parameters the cmdlet has' {
        foreach ($documented in $help.parameters.parameter.name) {
            $command.Parameters.Keys | Should -Contain $documented
        }
    }

    It 'names its input and output types' {
        $help.inputTypes.inputType | Should -Not -BeNullOrEmpty
        ($help.returnValues.returnValue.type.name -join ' ') | Should -Match ($command.OutputType.Name -join '|')
    }

    It 'prints examples with Get-Help -Examples' {
        $text = Get-Help $Name -Examples | Out-String
        $text | Should -Match 'Example 1'
    }
}

Describe 'about_VDisk' {
    It 'is found by Get-Help' {
        $text = Get-Help about_VDisk | Out-String
        $text | Should -Match 'SHORT DESCRIPTION'
        $text | Should -Match 'BackingChainLoop'
    }
}
