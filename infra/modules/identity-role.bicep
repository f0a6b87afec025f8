// The custom role for assigning the user-assigned identities the pools' scale sets carry, defined
// once per resource group of such identities (assignable there only); identity-access.bicep
// assigns it at each identity.

targetScope = 'resourceGroup'

@description('The role\'s actions (main.bicep identityActions).')
param actions array

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(toLower(resourceGroup().id), 'Poolkeeper identity assignment')
  properties: {
    roleName: 'Poolkeeper identity assignment (${resourceGroup().name}, ${subscription().subscriptionId})'
    description: 'Writes to the pools\' scale sets carry the user-assigned identities their models reference.'
    type: 'CustomRole'
    permissions: [ { actions: actions, notActions: [] } ]
    assignableScopes: [ resourceGroup().id ]
  }
}
